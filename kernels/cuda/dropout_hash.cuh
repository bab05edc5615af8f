// The dropout mask's counter-based uniform, shared by dropout.cu and the fused
// BatchNorm -> ReLU -> Dropout kernel in batchnorm.cu.
#pragma once
#include <cstdint>

namespace dofpose::cuda_kernels {

// cpu::dropout_uniform, operation for operation: splitmix64 output number
// `index` of the stream seeded with `seed`, top 24 bits times 2^-24 (exact).
__host__ __device__ __forceinline__ float dropout_uniform(uint64_t seed, uint64_t index) {
  uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return float(z >> 40) * (1.0f / 16777216.0f);
}

}  // namespace dofpose::cuda_kernels
