// An engine context: the device that runs the ops, its activation arena and,
// on CUDA, the one stream every op of this context is queued on.
#pragma once
#include "dofpose/arena.h"

namespace dofpose {

class Context {
 public:
  explicit Context(Device device = Device::CPU);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const { return device_; }
  void* stream() const { return stream_; }  // cudaStream_t on CUDA, nullptr on CPU
  Arena& arena() { return arena_; }
  void synchronize();
  // Makes this context's stream the one that ops on this thread queue CUDA work on.
  void make_current() const;

 private:
  Device device_;
  void* stream_ = nullptr;
  Arena arena_;
};

}  // namespace dofpose
