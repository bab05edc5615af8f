// Inference replayed from a CUDA graph. The first run() of an input shape
// runs the model eagerly twice (the first sizes the arena, the second
// checks it no longer grows), then captures Model::forward_staged into a
// CUDA graph; every later run() of that shape stages the inputs (host work
// and one upload) and launches the graph: one launch for the whole network,
// no allocation, no host synchronisation inside. The arena hands out the
// same addresses every pass, which is what makes the replay valid. A new
// input shape captures again.
#pragma once
#include <memory>
#include <vector>

#include "dofpose/context.h"
#include "dofpose/nn/model.h"

namespace dofpose::nn {

class GraphForward {
 public:
  // The model's module must already be on CUDA (Module::to_device).
  explicit GraphForward(Model& model);
  ~GraphForward();
  GraphForward(const GraphForward&) = delete;
  GraphForward& operator=(const GraphForward&) = delete;

  // Host (or device) inputs as for Model::forward; returns device views into
  // this object's arena, valid until the next run(). Queued on stream(),
  // which becomes the thread's current op stream: call synchronize() (or copy
  // the outputs to the host) before reading. Device inputs are copied on
  // stream() after the work already queued on the caller's stream; keep them
  // unchanged until then (synchronize(), or queue later writes on stream()).
  std::vector<NamedView> run(const ModelInputs& in);
  void synchronize() { ctx_.synchronize(); }
  void* stream() const { return ctx_.stream(); }
  int captures() const { return captures_; }  // how many graphs were built

 private:
  Model& model_;
  Context ctx_;
  void* graph_ = nullptr;
  Shape input_shape_, attr_shape_;
  std::vector<NamedView> outputs_;
  int captures_ = 0;
};

}  // namespace dofpose::nn
