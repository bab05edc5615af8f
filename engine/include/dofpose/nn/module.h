// Layers for the networks: a Module owns parameters (value + gradient) and
// buffers (e.g. BatchNorm running statistics), names them hierarchically like
// a PyTorch state_dict ("hg.0.res.1.bn1.weight"), and implements forward and
// backward by hand on top of the op API (dofpose/ops.h).
//
// Conventions every layer follows:
//  * forward(arena, x, mode) returns a view allocated from `arena` and keeps
//    whatever backward needs (views into the same arena) inside the layer, so
//    a training step is: arena.reset(); forward; loss; backward; optimizer step.
//  * backward(arena, dy) returns dx (from `arena`) and WRITES (does not
//    accumulate) the gradients of the layer's parameters. Call it once per
//    forward, in reverse order.
//  * Inference mode uses BatchNorm running statistics and disables dropout.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "dofpose/arena.h"
#include "dofpose/tensor.h"

namespace dofpose::nn {

enum class Mode { Train, Infer };

// Fused inference: inside a ScopedNoGrad (no backward will follow; Model::forward
// and nn::GraphForward open one) Mode::Infer runs each conv / linear layer with
// its neighbouring BatchNorm, ReLU and residual add as one op
// (ops::conv2d_fused_forward, ops::linear_fused_forward), and a batch-1 lifter
// on CUDA as one kernel. Such a forward keeps nothing for backward. Without a
// ScopedNoGrad, Mode::Infer is PyTorch's eval(): every layer, backward allowed.
// Off while a ScopedUnfused lives (tests, benchmarks), and whenever
// the active tracer needs every layer (--dump).
bool fused_inference(Mode mode);
// Fused training: Mode::Train runs each BatchNorm -> ReLU (-> Dropout) as one
// op (ops::batchnorm_relu_dropout_*, BatchNorm::forward_relu), bitwise the
// separate layers. Off under ScopedUnfused and for tracers that need every layer.
bool fused_training(Mode mode);
class ScopedNoGrad {
 public:
  ScopedNoGrad();
  ~ScopedNoGrad();
  ScopedNoGrad(const ScopedNoGrad&) = delete;
  ScopedNoGrad& operator=(const ScopedNoGrad&) = delete;

 private:
  bool previous_;
};
// Turns both fusions off (layer-by-layer reference runs, benchmarks).
class ScopedUnfused {
 public:
  ScopedUnfused();
  ~ScopedUnfused();
  ScopedUnfused(const ScopedUnfused&) = delete;
  ScopedUnfused& operator=(const ScopedUnfused&) = delete;

 private:
  bool previous_;
};

struct Param {
  std::string name;  // full name, e.g. "pre.conv1.weight"
  Tensor* value;
  Tensor* grad;
};

struct Buffer {
  std::string name;  // e.g. "pre.bn1.running_mean"
  Tensor* value;
};

class Module {
 public:
  virtual ~Module() = default;
  // Appends this module's parameters and buffers, names prefixed by `prefix`
  // (which already ends with '.' unless empty).
  virtual void collect(const std::string& prefix, std::vector<Param>& params,
                       std::vector<Buffer>& buffers) = 0;

  std::vector<Param> parameters();
  std::vector<Buffer> buffers();
  int64_t parameter_count();
  // Moves every parameter, gradient and buffer to device d (copies; views of
  // the old tensors become invalid). Optimizers must be created after this.
  void to_device(Device d);
  Device device();  // where the first parameter lives (CPU for a module without any)
};

}  // namespace dofpose::nn
