// CUDA kernels: the same functions as kernels/cpu/cpu_kernels.h, on device
// pointers, queued on `stream`. Each is checked against its CPU twin.
#pragma once
#include <cstdint>

namespace dofpose::cuda_kernels {

void relu_forward(int64_t n, const float* x, float* y, void* stream);
void relu_backward(int64_t n, const float* x, const float* dy, float* dx, void* stream);
void add_forward(int64_t n, const float* a, const float* b, float* y, void* stream);
void accumulate(int64_t n, const float* x, float* y, void* stream);

}  // namespace dofpose::cuda_kernels
