// Conversions between the activation storage types (float32, IEEE half,
// bfloat16), rounding to nearest even (engine/src/dtype.cpp's functions): the
// reference of cuda/cast.cu, and how ops.cpp runs the ops that take 16-bit
// activations on the CPU (widen to float32, compute, round once on the way out).
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"

namespace dofpose::cpu {

namespace {
float load(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}
}  // namespace

void cast(int64_t n, const void* x, DType xt, void* y, DType yt) {
  if (xt == yt) {
    if (x != y) std::memmove(y, x, size_t(n) * dtype_size(xt));
    return;
  }
  if (yt == DType::F32) {
    float* out = static_cast<float*>(y);
    for (int64_t i = 0; i < n; ++i) out[i] = load(x, xt, i);
    return;
  }
  uint16_t* out = static_cast<uint16_t*>(y);
  const bool half = yt == DType::F16;
  for (int64_t i = 0; i < n; ++i) {
    const float v = load(x, xt, i);
    out[i] = half ? f32_to_f16(v) : f32_to_bf16(v);
  }
}

}  // namespace dofpose::cpu
