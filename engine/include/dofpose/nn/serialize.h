// Saving and loading a Module's parameters and buffers (F32) in the dofpose
// weights format, optionally with an optimizer's state.
#pragma once
#include <map>
#include <string>

#include "dofpose/nn/module.h"
#include "dofpose/weights.h"

namespace dofpose::nn {

class Optimizer;

constexpr const char* kModelFormatVersion = "1";

// Writes every parameter and buffer under its full name, the metadata given
// (callers pass "kind" and "config"; "format_version" is set to "1" when
// absent) and, when `optimizer` is set, its state ("optim.*", "optimizer").
void save_module(Module& module, const std::string& path,
                 const std::map<std::string, std::string>& metadata,
                 const Optimizer* optimizer = nullptr);

// Copies every parameter and buffer from `file`. Each one must exist with the
// exact shape; tensors the module does not have are an error too (except the
// optimizer state "optim.*"). Errors name the file, the tensor and both shapes.
// The module is left untouched when any check fails.
void load_module(Module& module, const WeightsFile& file);

// The metadata's format_version must be "1" and kind must equal `kind`.
void check_model_metadata(const WeightsFile& file, const std::string& kind);

}  // namespace dofpose::nn
