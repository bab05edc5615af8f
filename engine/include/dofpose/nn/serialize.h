// Saving and loading a Module's parameters and buffers (F32) in the dofpose
// weights format, optionally with an optimizer's state.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json_fwd.hpp>

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

// A config integer: read as 64 bits and range-checked before it becomes an
// int, so a huge value is reported as written instead of wrapping.
// `where` prefixes the error ("LifterConfig", "hourglass config").
int config_int(const nlohmann::json& v, const std::string& where, const std::string& key,
               int64_t lo, int64_t hi);

// Refuses a config that needs more parameter values than `file` holds
// (tensors other than "optim.*"): a config and tensors that disagree are named
// before the model is built, not after gigabytes have been allocated.
// `min_params` is a lower bound of the config's parameter count.
void check_config_fits_file(const WeightsFile& file, int64_t min_params, const std::string& what);

}  // namespace dofpose::nn
