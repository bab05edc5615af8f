// Element-wise arithmetic; plain loops that the compiler auto-vectorises.
#include <algorithm>
#include "kernels/cpu/cpu_kernels.h"

namespace dofpose::cpu {

void add_forward(int64_t n, const float* a, const float* b, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void accumulate(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void scale(int64_t n, float alpha, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = alpha * x[i];
}

void fill(int64_t n, float value, float* y) { std::fill(y, y + n, value); }

void copy_columns(int rows, int width, const float* src, int src_cols, int src_col, float* dst,
                  int dst_cols, int dst_col, bool accumulate) {
  for (int r = 0; r < rows; ++r) {
    const float* s = src + int64_t(r) * src_cols + src_col;
    float* d = dst + int64_t(r) * dst_cols + dst_col;
    if (accumulate)
      for (int c = 0; c < width; ++c) d[c] += s[c];
    else
      std::copy(s, s + width, d);
  }
}

void affine_columns(int rows, int cols, const float* x, const float* mul, const float* add,
                    float* y) {
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      y[int64_t(r) * cols + c] = x[int64_t(r) * cols + c] * mul[c] + add[c];
}

void standardize_columns(int rows, int cols, int count, const float* x, const float* mean,
                         const float* std, float* y) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + int64_t(r) * cols;
    float* yr = y + int64_t(r) * cols;
    for (int c = 0; c < count; ++c) yr[c] = (xr[c] - mean[c]) / std[c];
    for (int c = count; c < cols; ++c) yr[c] = xr[c];
  }
}

}  // namespace dofpose::cpu
