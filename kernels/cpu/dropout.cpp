// Dropout with a counter-based random stream, so every backend (and any
// thread split) draws the same mask from (seed, element index).
#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"

namespace dofpose::cpu {
namespace {

void check_p(const char* op, float p) {
  DOFPOSE_CHECK(p >= 0.f && p < 1.f, op, ": drop probability p must be in [0, 1), got ", p);
}

}  // namespace

// dropout_uniform(seed, i) (inline, cpu_kernels.h) = top 24 bits of splitmix64's output number i of the stream
// seeded with `seed`, times 2^-24, which is exact in float and lies in [0, 1):
//   z = seed + (i + 1) * 0x9E3779B97F4A7C15            (mod 2^64)
//   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
//   z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//   z =  z ^ (z >> 31)
//   u = float(z >> 40) * 2^-24   (converted through int32: exact, as z >> 40 < 2^24)
// Only 64-bit adds, xors, shifts and multiplies: the CUDA kernel must use this
// exact recipe (it is a handful of instructions there too).
void dropout_forward(int64_t n, float p, uint64_t seed, const float* x, float* y,
                     uint8_t* mask) {
  check_p("dropout_forward", p);
  const float keep_scale = 1.f / (1.f - p);  // PyTorch scales by 1/(1-p) too
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (n > kHashParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) {  // branch-free, so it vectorises (see dropout_uniform)
    const bool keep = dropout_uniform(seed, uint64_t(i)) >= p;  // p == 0 keeps all
    const float kept = x[i] * keep_scale;
    y[i] = keep ? kept : 0.f;
    if (mask) mask[i] = keep;
  }
}

void dropout_backward(int64_t n, float p, const uint8_t* mask, const float* dy, float* dx) {
  check_p("dropout_backward", p);
  if (!dx) return;
  const float keep_scale = 1.f / (1.f - p);
  for (int64_t i = 0; i < n; ++i) dx[i] = mask[i] ? dy[i] * keep_scale : 0.f;
}

}  // namespace dofpose::cpu
