// Arena: a bump allocator for activations. It is sized once per model and input
// shape: the first pass grows it (extra chunks), reset() then merges the chunks
// into one block of the high-water size, so every later pass allocates nothing.
#pragma once
#include <cstddef>
#include <vector>

#include "dofpose/tensor.h"

namespace dofpose {

class Arena {
 public:
  explicit Arena(Device device = Device::CPU, size_t initial_bytes = 0);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // A contiguous tensor, 64-byte aligned, valid until reset().
  TensorView alloc(Shape s, DType t = DType::F32);
  // Forgets every allocation; merges overflow chunks into one block.
  void reset();
  // Ensures one block of at least `bytes` (frees the old block).
  void reserve(size_t bytes);

  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }
  size_t high_water() const { return high_water_; }
  int chunk_count() const { return int(overflow_.size()) + (block_ ? 1 : 0); }
  Device device() const { return device_; }

 private:
  Device device_;
  char* block_ = nullptr;
  size_t capacity_ = 0;
  size_t offset_ = 0;      // bump pointer into block_
  size_t used_ = 0;        // bytes handed out since reset, all chunks
  size_t high_water_ = 0;
  std::vector<std::pair<char*, size_t>> overflow_;
};

// Raw device memory used by Tensor and Arena (64-byte aligned on CPU).
void* device_malloc(size_t bytes, Device d);
void device_free(void* p, Device d);

}  // namespace dofpose
