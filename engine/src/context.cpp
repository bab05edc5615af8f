#include "dofpose/context.h"

#include "dofpose/cuda_backend.h"
#include "dofpose/ops.h"

namespace dofpose {

Context::Context(Device device) : device_(device), arena_(device) {
  if (device == Device::CUDA) {
    DOFPOSE_CHECK(cuda::built(), "Context: this dofpose was built without the CUDA backend");
    DOFPOSE_CHECK(cuda::device_count() > 0, "Context: no CUDA device found");
    stream_ = cuda::stream_create();
  }
}

Context::~Context() {
  // Ops on this thread must not keep queueing on a destroyed stream.
  if (stream_ && ops::cuda_stream() == stream_) ops::set_cuda_stream(nullptr);
  if (stream_) {
    try {
      cuda::stream_destroy(stream_);
    } catch (...) {  // destructors must not throw; the stream dies with the process anyway
    }
  }
}

void Context::make_current() const { ops::set_cuda_stream(stream_); }

void Context::synchronize() {
  if (stream_) cuda::stream_synchronize(stream_);
}

}  // namespace dofpose
