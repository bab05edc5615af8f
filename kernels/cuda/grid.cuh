// The grid-stride element-wise kernels' launch shape, shared by the files
// that use it (cast, dropout, elementwise, grad_reverse, pool, resize): 256
// threads a block, enough blocks for one element a thread, capped (the loops
// stride over the rest).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace dofpose::cuda_kernels::grid {

constexpr int kThreads = 256;
inline int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return int(b < 65535 * 16 ? (b > 0 ? b : 1) : 65535 * 16);
}
inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace dofpose::cuda_kernels::grid
