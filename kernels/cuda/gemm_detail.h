// gemm.cu's internals that other kernel files use: the device facts and math
// choice the tile kernels need, the strided-batched product (conv2d.cu's 1x1
// path) and the skinny-shape test (linear.cu). Not part of the kernel API.
#pragma once
#include <atomic>
#include <cstdint>

namespace dofpose::cuda_kernels {

// Which tile kernel runs a product (detail::tile_math() picks it from
// math_mode() and the device).
enum class TileMath { Simt, Tf32, Fp16, Bf16 };

namespace detail {
int multiprocessor_count();
bool has_16bit_tensor_cores();  // sm_80+: the tile kernels' 16-bit WMMA paths exist
bool use_tf32_tensor_cores();
TileMath tile_math();
bool tile_pipeline();  // set_tile_pipeline()
bool tf32_mma();       // set_tf32_mma()
extern std::atomic<int64_t> g_pipelined_launches;  // pipelined_launches()
// Whether gemm() takes the warp-per-output path for this many outputs and reduction length.
bool gemm_is_skinny(int64_t outputs, int K);
// With an addend (laid out as C, not aliasing it) and a row_bias,
// C[b][i][j] = ((alpha A B + beta C) + addend)[b][i][j] + row_bias[i]: a
// gradient that reaches the output by another path (a residual block's skip)
// and the 1x1 convolution's bias, added in the tile kernels' store (other
// paths add them in a pass of their own).
void gemm_strided_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                          const float* A, int lda, int64_t stride_a, const float* B, int ldb,
                          int64_t stride_b, float beta, float* C, int ldc, int64_t stride_c,
                          int batch, void* stream, const float* row_bias = nullptr,
                          const float* addend = nullptr);
}  // namespace detail

}  // namespace dofpose::cuda_kernels
