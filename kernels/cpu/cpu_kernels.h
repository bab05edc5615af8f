// CPU reference kernels: raw float32 pointers, contiguous NCHW / row-major.
// Every function here is the reference the CUDA backend is checked against.
// Convention: backward functions OVERWRITE their gradient outputs (they do not
// accumulate); any gradient output pointer may be nullptr to skip it.
#pragma once
#include <cmath>
#include <cstdint>

#include "dofpose/dtype.h"
#include "dofpose/op_shapes.h"

namespace dofpose::cpu {

// Inference BatchNorm's per-channel scale gamma / sqrt(var + eps), the root in
// double: the one formula of batchnorm_forward_infer and the fused ops
// (conv2d_fused.cpp, linear_fused.cpp), so fused and unfused agree bit for bit.
inline float batchnorm_infer_scale(const float* gamma, const float* running_var, float eps, int c) {
  const double invstd = 1.0 / std::sqrt(double(running_var[c]) + double(eps));
  return float(invstd * (gamma ? gamma[c] : 1.f));
}

// ---- cast.cpp: y = x converted between F32, F16 and BF16 (round to nearest
// even), n elements; the same dtype copies.
void cast(int64_t n, const void* x, DType xt, void* y, DType yt);

// ---- gemm.cpp: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C (row-major).
// Packed, cache-blocked, AVX2/FMA micro-kernel when compiled for it, all cores.
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);
// The im2col matrix of output rows [p0, p1) of one image x [C, H, W]:
// col[(c*R + r)*S + s][(p - p0)*Q + q] = x[c][p*stride - pad + r][q*stride - pad + s]
// (0 outside the image); (p1 - p0) * Q columns, C * R * S rows.
struct Im2colMatrix {
  const float* x;
  int C, H, W, R, S, stride, pad, Q, p0, p1;
};
// C = alpha * A[M, C*R*S] * col + beta * C, bit for bit gemm(false, false, ...)
// on the materialised col, but with col's panels packed straight from the image
// (the convolution's implicit GEMM: no im2col buffer written and read back).
void gemm_im2col(int M, float alpha, const float* A, int lda, const Im2colMatrix& col, float beta,
                 float* C, int ldc);
// C = A * relu((B - mean) * scale + shift) with B's row k normalised by
// mean[k], scale[k], shift[k] as it is packed (alpha 1, beta 0): a 1x1
// convolution with the fused BN + ReLU prologue (conv2d_fused.cpp), bit for
// bit that pass over B followed by gemm(), without writing the normalised B.
struct GemmRowPrologue {
  const float *mean, *scale, *shift;
};
void gemm_bn_relu_b(int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                    const GemmRowPrologue& pro, float* C, int ldc);
// The packed GEMM's register tile, for kernels that pack their own operands
// (conv2d_winograd.cpp): C[mr x nr] (row stride ldc) = Ap * Bp, where Ap holds
// kc groups of kGemmMR values (row i of the tile at offset i) and Bp, 32-byte
// aligned, kc rows of kGemmNR values; rows / columns beyond mr / nr are
// computed and not stored. Sums k ascending, like gemm() within a KC block;
// accumulate: C += Ap * Bp (the sum, then one add to each element of C).
constexpr int kGemmMR = 6;
constexpr int kGemmNR = 16;
void gemm_micro_tile(int kc, const float* Ap, const float* Bp, float* C, int ldc, int mr, int nr,
                     bool accumulate = false);
// Straightforward triple loop (for tests and as the portable definition).
void gemm_naive(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                int lda, const float* B, int ldb, float beta, float* C, int ldc);

// ---- conv2d.cpp: groups divide C and K; depthwise is groups == C.
void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                    float* y);
// conv2d_fused.cpp: the reference of the fused convolution (ConvFusion):
// the same arithmetic, op for op, as batchnorm_forward_infer, relu, conv2d and add.
void conv2d_fused_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                          const ConvFusion& f, float* y);
// conv2d_winograd.cpp: the same convolution by Winograd F(4x4, 3x3) for 3x3,
// stride 1, pad 1, groups 1 (conv2d_winograd_applies): 4x fewer multiplies,
// not bit-identical to conv2d_forward (the fused inference chooses it,
// ConvFusion::winograd).
bool conv2d_winograd_applies(const Conv2dShape& s);
// Applies and has enough output tiles to beat the implicit GEMM (measured,
// docs/cpu-kernels.md): what conv2d_fused_forward checks when f.winograd is set.
bool conv2d_winograd_worthwhile(const Conv2dShape& s);
// `out`, when given: its out_bn, out_relu and residual are applied as the
// tiles are written (conv2d_fused_forward's epilogue; in_bn must be absent).
void conv2d_winograd_forward(const Conv2dShape& s, const float* x, const float* w,
                             const float* bias, float* y, const ConvFusion* out = nullptr);
// The input gradient of the same convolution (s: the forward's shape; dx
// overwritten): a 3x3 stride-1 pad-1 conv of dy with the filters flipped and
// their channels swapped, by Winograd. conv2d_backward's dx with other rounding.
void conv2d_winograd_backward_data(const Conv2dShape& s, const float* w, const float* dy, float* dx);
// Its weight gradient (dw [K][C][3][3] overwritten, summed over the batch) by
// F(3x3, 4x4): 36 GEMMs of K x C over the 4x4 tiles of dy instead of one of
// K x 9C over every pixel, by blocks of tiles transformed straight into the
// register tile's packed operands. conv2d_backward's dw with other rounding;
// the same bits whatever the thread count.
void conv2d_winograd_backward_weights(const Conv2dShape& s, const float* x, const float* dy, float* dw);
void conv2d_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* dbias);

// ---- linear.cpp: x [N,in], w [out,in] (PyTorch layout), b [out], y [N,out].
void linear_forward(int N, int in, int out, const float* x, const float* w, const float* b,
                    float* y);
// linear_fused.cpp: the reference of the fused linear (LinearFusion): the arithmetic of
// linear_forward, batchnorm_forward_infer, relu_forward and add_forward, op for op.
void linear_fused_forward(int N, int in, int out, const float* x, const float* w,
                          const LinearFusion& f, float* y);
// dx_add, when given, is added to dx afterwards (accumulate's pass).
void linear_backward(int N, int in, int out, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* db, const float* dx_add = nullptr);
// Rows of w [rows, cols] with an L2 norm above max_norm scaled by
// max_norm / (norm + 1e-7) (the lifters' weight constraint, nn::apply_max_norm);
// each row's squares summed in double lanes (lane_sum.h), rows in parallel.
void max_norm_rows(int64_t rows, int64_t cols, float max_norm, float* w);

// ---- batchnorm.cpp
// Training: normalises with batch statistics (biased variance), stores
// save_mean/save_invstd [C] for backward, and updates running statistics as
// PyTorch does (momentum, unbiased variance). running_* may be nullptr.
void batchnorm_forward_train(const BatchNormShape& s, const float* x, const float* gamma,
                             const float* beta, float* running_mean, float* running_var,
                             float momentum, float eps, float* y, float* save_mean,
                             float* save_invstd);
void batchnorm_forward_infer(const BatchNormShape& s, const float* x, const float* gamma,
                             const float* beta, const float* running_mean,
                             const float* running_var, float eps, float* y);
void batchnorm_backward_train(const BatchNormShape& s, const float* x, const float* gamma,
                              const float* save_mean, const float* save_invstd, const float* dy,
                              float* dx, float* dgamma, float* dbeta);
// Backward of the inference form (running statistics are constants).
void batchnorm_backward_infer(const BatchNormShape& s, const float* x, const float* gamma,
                              const float* running_mean, const float* running_var, float eps,
                              const float* dy, float* dx, float* dgamma, float* dbeta);
// BatchNorm (training) -> ReLU -> Dropout(p, seed) as one op, bitwise the three
// kernels in order; mask[i] = 1 where the gradient passes (kept by dropout and
// not cut by the ReLU), so backward needs no copy of the BatchNorm output.
// p = 0 is BatchNorm -> ReLU. A residual, when given, is added last
// (y = residual + dropout(...), add_forward's arithmetic).
void batchnorm_relu_dropout_forward_train(const BatchNormShape& s, const float* x,
                                          const float* gamma, const float* beta,
                                          float* running_mean, float* running_var,
                                          float momentum, float eps, float p, uint64_t seed,
                                          float* y, float* save_mean, float* save_invstd,
                                          uint8_t* mask, const float* residual = nullptr);
void batchnorm_relu_dropout_backward_train(const BatchNormShape& s, const float* x,
                                           const float* gamma, const float* save_mean,
                                           const float* save_invstd, const uint8_t* mask,
                                           float p, const float* dy, float* dx, float* dgamma,
                                           float* dbeta, const float* dx_add = nullptr);
// Folds an inference BatchNorm that FOLLOWS a conv/linear into its weight
// [K, per_channel] and bias [K] (bias must exist; start it at zero if the layer had none).
void batchnorm_fold(int K, int64_t per_channel, float* weight, float* bias, const float* gamma,
                    const float* beta, const float* running_mean, const float* running_var,
                    float eps);

// ---- activation.cpp (backward takes the forward INPUT x)
void relu_forward(int64_t n, const float* x, float* y);
void relu_backward(int64_t n, const float* x, const float* dy, float* dx);
void relu6_forward(int64_t n, const float* x, float* y);
void relu6_backward(int64_t n, const float* x, const float* dy, float* dx);

// ---- elementwise.cpp
void add_forward(int64_t n, const float* a, const float* b, float* y);
// y += x (gradient accumulation at fan-out points, and add's backward).
void accumulate(int64_t n, const float* x, float* y);
void scale(int64_t n, float alpha, const float* x, float* y);  // y = alpha * x
void fill(int64_t n, float value, float* y);
// Column block copy between row-major matrices with `rows` rows:
// dst[r, dst_col + c] (=, or += when accumulate) src[r, src_col + c], c < width.
void copy_columns(int rows, int width, const float* src, int src_cols, int src_col, float* dst,
                  int dst_cols, int dst_col, bool accumulate);
// y[r, c] = x[r, c] * mul[c] + add[c] over [rows, cols] (per-column affine).
void affine_columns(int rows, int cols, const float* x, const float* mul, const float* add,
                    float* y);
// y[r, c] = (x[r, c] - mean[c]) / std[c] for c < count, x[r, c] for count <= c < cols
// (the lifters' input and target standardisation; attribute columns pass through).
void standardize_columns(int rows, int cols, int count, const float* x, const float* mean,
                         const float* std, float* y);

// ---- pool.cpp: 2x2 window, stride 2, output [N,C,H/2,W/2] (floor). Ties go to
// the first maximum in row-major window order, as PyTorch.
void maxpool2x2_forward(int N, int C, int H, int W, const float* x, float* y);
// dx_add, when given, is added to dx afterwards (accumulate's pass).
void maxpool2x2_backward(int N, int C, int H, int W, const float* x, const float* dy, float* dx,
                         const float* dx_add = nullptr);

// ---- resize.cpp
void upsample_nearest2x_forward(int N, int C, int H, int W, const float* x, float* y);
void upsample_nearest2x_backward(int N, int C, int H, int W, const float* dy, float* dx);
// The hourglass merge: y = a + upsample_nearest2x(low), a [N,C,2H,2W], low [N,C,H,W].
void upsample_add_forward(int N, int C, int H, int W, const float* a, const float* low, float* y);
void bilinear_forward(int N, int C, int H, int W, int OH, int OW, ResizeMode mode,
                      const float* x, float* y);
void bilinear_backward(int N, int C, int H, int W, int OH, int OW, ResizeMode mode,
                       const float* dy, float* dx);

// ---- dropout.cpp: keep element i iff uniform(seed, i) >= p; kept values are
// scaled by 1/(1-p). The uniform comes from a counter-based hash, so any
// backend reproduces the same mask from (seed, i). mask[i] is 1 if kept.
// Loops that hash every element (dropout masks) go parallel above this many
// elements: the hash costs ~10 cycles, so a lifter layer at batch 64 (65,536
// values) is worth splitting, where a plain element-wise loop is not.
constexpr int64_t kHashParallelMin = 8192;
// splitmix64 output number index + 1 of the stream at `seed`, top 24 bits as a
// float in [0, 1). Inline: the dropout loops call it per element, and with
// the loops branch-free the compiler vectorises hash and all (8.6 -> 0.75 ns
// an element on AVX-512; a data-dependent branch per element mispredicted half
// the time). z >> 40 < 2^24 converts exactly through int32, which SIMD
// converts directly (uint64 -> float has no AVX2 instruction).
inline float dropout_uniform(uint64_t seed, uint64_t index) {
  uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return float(int32_t(z >> 40)) * (1.0f / 16777216.0f);
}
void dropout_forward(int64_t n, float p, uint64_t seed, const float* x, float* y, uint8_t* mask);
void dropout_backward(int64_t n, float p, const uint8_t* mask, const float* dy, float* dx);

// ---- softargmax.cpp: rows of H*W heatmap values (NJ = batch * joints).
// prob = softmax(beta * heat) over each row; coords[r] = (sum prob*x, sum prob*y)
// with x in [0, W-1], y in [0, H-1] (pixel centres of the heatmap grid).
void softargmax_forward(int NJ, int H, int W, float beta, const float* heat, float* prob,
                        float* coords);
void softargmax_backward(int NJ, int H, int W, float beta, const float* prob,
                         const float* dcoords, float* dheat);

// ---- grad_reverse.cpp: forward is identity, backward multiplies by -lambda.
void grad_reverse_forward(int64_t n, const float* x, float* y);
void grad_reverse_backward(int64_t n, float lambda, const float* dy, float* dx);

// ---- loss.cpp: each forward returns the scalar loss; backward gets dloss
// (the gradient flowing into the scalar, usually 1) and writes dpred.
// Heatmap MSE: pred/target [NJ, HW]; joint_weight [NJ] or nullptr (all 1);
// loss = sum_j w_j * sum_p (pred - target)^2 / (NJ * HW).
float heatmap_mse_forward(int NJ, int HW, const float* pred, const float* target,
                          const float* joint_weight);
void heatmap_mse_backward(int NJ, int HW, const float* pred, const float* target,
                          const float* joint_weight, float dloss, float* dpred);
// Multi-output cross-entropy: logits [N, T, C] (T independent C-way outputs);
// labels [N, T] in [0, C) or -1 to ignore. loss = mean over labelled outputs.
float cross_entropy_forward(int N, int T, int C, const float* logits, const int32_t* labels);
void cross_entropy_backward(int N, int T, int C, const float* logits, const int32_t* labels,
                            float dloss, float* dlogits);
// L1: loss = mean |pred - target| over n elements; d/dpred = sign(pred - target) / n.
float l1_forward(int64_t n, const float* pred, const float* target);
void l1_backward(int64_t n, const float* pred, const float* target, float dloss, float* dpred);

}  // namespace dofpose::cpu
