#include "dofpose/nn/graph_forward.h"

#include "dofpose/cuda_backend.h"
#include "dofpose/ops.h"

namespace dofpose::nn {

GraphForward::GraphForward(Model& model) : model_(model), ctx_(Device::CUDA) {
  DOFPOSE_CHECK(model.module().device() == Device::CUDA,
                "GraphForward: the model's parameters are on the ",
                device_name(model.module().device()), "; move them with module().to_device(CUDA)");
}

GraphForward::~GraphForward() { cuda::graph_destroy(graph_); }

std::vector<NamedView> GraphForward::run(const ModelInputs& in) {
  model_.check_inputs(in);
  // Device inputs were written on the caller's stream: the copies below, on
  // this graph's (non-blocking) stream, must wait for that work.
  void* caller_stream = ops::cuda_stream();
  ctx_.make_current();
  if ((!in.input.empty() && in.input.device == Device::CUDA) ||
      (!in.attributes.empty() && in.attributes.device == Device::CUDA))
    cuda::stream_wait(ctx_.stream(), caller_stream);
  Arena& arena = ctx_.arena();
  // Resets the arena and stages the inputs into it. Device inputs are copied
  // in too: the graph reads fixed addresses, and the caller's buffer may be
  // another one next time.
  auto stage = [&] {
    arena.reset();
    auto pin = [&](const TensorView& v) {
      if (v.empty() || v.device == Device::CPU) return v;
      TensorView c = arena.alloc(v.shape, v.dtype);
      copy(v, c);
      return c;
    };
    return model_.stage_inputs(arena, ModelInputs{pin(in.input), pin(in.attributes)});
  };
  const bool same_shape = graph_ && in.input.shape == input_shape_ &&
                          in.attributes.shape == attr_shape_;
  if (!same_shape) {
    cuda::graph_destroy(graph_);
    graph_ = nullptr;
    // Two eager passes: the first grows the arena, reset() merges it into one
    // block, the second must then fit (checked) so the capture allocates nothing.
    for (int pass = 0; pass < 2; ++pass) {
      const ModelInputs staged = stage();  // (reset merges the first pass's chunks)
      const size_t before = arena.capacity();
      model_.forward_staged(arena, staged);
      if (pass == 1)
        DOFPOSE_CHECK(arena.capacity() == before && arena.chunk_count() == 1,
                      "GraphForward: the arena still grew on the second pass");
    }
    const ModelInputs staged = stage();
    cuda::graph_capture_begin(ctx_.stream());
    try {
      outputs_ = model_.forward_staged(arena, staged);
    } catch (...) {
      try {
        cuda::graph_destroy(cuda::graph_capture_end(ctx_.stream()));
      } catch (...) {  // the original error is the one to report
      }
      throw;
    }
    graph_ = cuda::graph_capture_end(ctx_.stream());
    DOFPOSE_CHECK(arena.chunk_count() == 1, "GraphForward: the arena grew during the capture");
    input_shape_ = in.input.shape;
    attr_shape_ = in.attributes.shape;
    ++captures_;
  } else {
    // Same shape: staging allocates the same first arena bytes as before the capture.
    stage();
  }
  cuda::graph_launch(graph_, ctx_.stream());
  return outputs_;
}

}  // namespace dofpose::nn
