// Arena: bump allocation for activations, sized by the first pass.
#include "dofpose/arena.h"

#include <cstdlib>

#include "dofpose/cuda_backend.h"

namespace dofpose {

namespace {
constexpr size_t kAlign = 64;
size_t round_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
}  // namespace

void* device_malloc(size_t bytes, Device d) {
  if (d == Device::CUDA) return cuda::malloc(bytes);
  void* p = std::aligned_alloc(kAlign, round_up(bytes ? bytes : 1));
  DOFPOSE_CHECK(p != nullptr, "out of host memory allocating ", bytes, " bytes");
  return p;
}

void device_free(void* p, Device d) {
  if (!p) return;
  if (d == Device::CUDA)
    cuda::free(p);
  else
    std::free(p);
}

Arena::Arena(Device device, size_t initial_bytes) : device_(device) {
  if (initial_bytes) reserve(initial_bytes);
}

Arena::~Arena() {
  device_free(block_, device_);
  for (auto& c : overflow_) device_free(c.first, device_);
}

void Arena::reserve(size_t bytes) {
  bytes = round_up(bytes);
  if (bytes <= capacity_ && overflow_.empty()) return;
  DOFPOSE_CHECK(used_ == 0, "Arena::reserve: ", used_, " bytes are still in use; call reset() first");
  device_free(block_, device_);
  block_ = static_cast<char*>(device_malloc(bytes, device_));
  capacity_ = bytes;
  offset_ = 0;
}

TensorView Arena::alloc(Shape s, DType t) {
  size_t bytes = round_up(size_t(s.numel()) * dtype_size(t));
  used_ += bytes;
  if (used_ > high_water_) high_water_ = used_;
  if (offset_ + bytes <= capacity_) {
    char* p = block_ + offset_;
    offset_ += bytes;
    return TensorView(p, s, t, device_);
  }
  // First pass (or a larger input): grow with an extra chunk; reset() merges.
  char* p = static_cast<char*>(device_malloc(bytes ? bytes : kAlign, device_));
  overflow_.emplace_back(p, bytes);
  return TensorView(p, s, t, device_);
}

void Arena::reset() {
  size_t want = high_water_;
  used_ = 0;
  offset_ = 0;
  if (!overflow_.empty()) {
    for (auto& c : overflow_) device_free(c.first, device_);
    overflow_.clear();
    reserve(want);
  }
}

}  // namespace dofpose
