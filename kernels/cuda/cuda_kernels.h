// CUDA kernels: the same functions as kernels/cpu/cpu_kernels.h, on device
// pointers, queued on `stream` (a cudaStream_t; nullptr = the legacy stream).
// Each is checked against its CPU twin by tests/cuda/test_backend_ops.cpp.
// Conventions as on the CPU: contiguous NCHW / row-major float32; backward
// functions OVERWRITE their gradient outputs; a nullptr gradient is skipped.
// No function here allocates, synchronises the host, or reads device memory
// back, except the losses, which return their scalar (one 4-byte copy).
#pragma once
#include <string>
#include <cstdint>

#include "dofpose/dtype.h"
#include "dofpose/op_shapes.h"

namespace dofpose::cuda_kernels {

// ---- math mode for the matrix products (gemm.cu, conv2d.cu)
// F32: plain FP32 FMA (matches the CPU to ~1e-5 relative).
// TF32: tensor cores with TF32 inputs and FP32 accumulation (~5e-4).
// FP16 / BF16: float32 tensors, each product's inputs rounded to half /
// bfloat16 on the tensor cores with FP32 accumulation (~1e-2; sm_80+).
// Convolutions and the tiled GEMM follow the mode; the small kernels
// (skinny GEMM, persistent lifter, element-wise) stay float32.
enum class MathMode { F32, TF32, FP16, BF16 };
void set_math_mode(MathMode m);
MathMode math_mode();
// The multi-stage cp.async tile kernels (gemm_tiles.cuh) for the conv forward
// and the dense GEMMs, in TF32 (WMMA; convs without input prologue) and
// FP16/BF16 (mma.sync; also convs with the BN+ReLU prologue and no padding).
// Off by default: written after the last GPU run, so not yet verified on a
// device. pipelined_launches() counts their launches (tests check that a case
// reached them).
void set_tile_pipeline(bool on);
bool tile_pipeline();
int64_t pipelined_launches();
// With the pipeline on, TF32 products run on the mma.sync kernel (hand-built
// m16n8k8 fragments) instead of the WMMA one. Off by default, not yet run.
void set_tf32_mma(bool on);
bool tf32_mma();
// The direct kernel for the stem convolution's forward (conv2d_stem.cu: C <= 4,
// up to 7x7, stride <= 2, no input prologue; F32 in every math mode), used by
// conv2d_forward / conv2d_fused_forward where it applies. Off by default:
// written after the last GPU run, so not yet verified on a device.
void set_stem_path(bool on);
bool stem_path();
// Which GEMM runs gemm() and linear_*: our kernel (default) or cuBLAS (the
// reference and an alternative path; cuBLAS honours math_mode() too).
enum class GemmBackend { Own, Cublas };
void set_gemm_backend(GemmBackend b);
GemmBackend gemm_backend();

// ---- cast.cu: y = x converted between F32, F16 and BF16 (round to nearest
// even), n elements; the same dtype copies.
void cast(int64_t n, const void* x, DType xt, void* y, DType yt, void* stream);

// ---- gemm.cu: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C (row-major),
// the same contract as cpu::gemm. Our own tiled kernel (shared-memory tiles,
// register blocking; TF32 tensor-core path when math_mode() == TF32).
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc, void* stream);

// ---- conv2d.cu: groups divide C and K; depthwise is groups == C.
void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                    float* y, void* stream);
// The fused convolution (ConvFusion): groups == 1; prologue in the patch
// loader, epilogue in the tile store, one launch.
void conv2d_fused_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                          const ConvFusion& f, float* y, void* stream);
void conv2d_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* dbias, void* stream);
// The fused convolution with 16-bit activations: x of dtype xt, y and
// f.residual (its pointer holds yt elements) of dtype yt, one of them F16 or
// BF16 and the other the same or F32; weights, bias and BatchNorm parameters
// float32. Runs on the 16-bit WMMA kernel of that type (sm_80+) whatever the
// math mode; the epilogue computes in float32 and rounds once as it stores.
void conv2d_fused_forward16(const Conv2dShape& s, const void* x, DType xt, const float* w,
                            const float* bias, const ConvFusion& f, void* y, DType yt,
                            void* stream);
// ---- conv2d_stem.cu: the stem's forward (with the fused epilogue) as a direct
// kernel; conv2d_forward / conv2d_fused_forward call it when stem_path() is on.
bool stem_forward_applies(const Conv2dShape& s, const ConvFusion& f);
void stem_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                  const ConvFusion& f, float* y, void* stream);

// ---- linear.cu: x [N,in], w [out,in], b [out], y [N,out].
void linear_forward(int N, int in, int out, const float* x, const float* w, const float* b,
                    float* y, void* stream);
// The fused linear (LinearFusion), in gemm.cu: one GEMM (our tile kernels,
// math_mode() honoured) whose epilogue adds the bias, BN, ReLU and residual.
void linear_fused_forward(int N, int in, int out, const float* x, const float* w,
                          const LinearFusion& f, float* y, void* stream);
// dx_add, when given, is added to dx in the GEMM's store.
void linear_backward(int N, int in, int out, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* db, const float* dx_add, void* stream);

// ---- batchnorm.cu (same semantics as cpu::batchnorm_*; running_* may be nullptr)
void batchnorm_forward_train(const BatchNormShape& s, const float* x, const float* gamma,
                             const float* beta, float* running_mean, float* running_var,
                             float momentum, float eps, float* y, float* save_mean,
                             float* save_invstd, void* stream);
void batchnorm_forward_infer(const BatchNormShape& s, const float* x, const float* gamma,
                             const float* beta, const float* running_mean,
                             const float* running_var, float eps, float* y, void* stream);
void batchnorm_backward_train(const BatchNormShape& s, const float* x, const float* gamma,
                              const float* save_mean, const float* save_invstd, const float* dy,
                              float* dx, float* dgamma, float* dbeta, void* stream);
void batchnorm_backward_infer(const BatchNormShape& s, const float* x, const float* gamma,
                              const float* running_mean, const float* running_var, float eps,
                              const float* dy, float* dx, float* dgamma, float* dbeta,
                              void* stream);
void batchnorm_fold(int K, int64_t per_channel, float* weight, float* bias, const float* gamma,
                    const float* beta, const float* running_mean, const float* running_var,
                    float eps, void* stream);
// BatchNorm (training) -> ReLU -> Dropout in one pass per channel (cpu:: twin).
void batchnorm_relu_dropout_forward_train(const BatchNormShape& s, const float* x,
                                          const float* gamma, const float* beta,
                                          float* running_mean, float* running_var,
                                          float momentum, float eps, float p, uint64_t seed,
                                          float* y, float* save_mean, float* save_invstd,
                                          uint8_t* mask, const float* residual, void* stream);
void batchnorm_relu_dropout_backward_train(const BatchNormShape& s, const float* x,
                                           const float* gamma, const float* save_mean,
                                           const float* save_invstd, const uint8_t* mask,
                                           float p, const float* dy, float* dx, float* dgamma,
                                           float* dbeta, const float* dx_add, void* stream);

// ---- elementwise.cu
void relu_forward(int64_t n, const float* x, float* y, void* stream);
void relu_backward(int64_t n, const float* x, const float* dy, float* dx, void* stream);
void relu6_forward(int64_t n, const float* x, float* y, void* stream);
void relu6_backward(int64_t n, const float* x, const float* dy, float* dx, void* stream);
void add_forward(int64_t n, const float* a, const float* b, float* y, void* stream);
void accumulate(int64_t n, const float* x, float* y, void* stream);
void scale(int64_t n, float alpha, const float* x, float* y, void* stream);
void fill(int64_t n, float value, float* y, void* stream);
// Column block copy between row-major matrices with `rows` rows:
// dst[r, dst_col + c] (=, or += when accumulate) src[r, src_col + c], c < width.
void copy_columns(int rows, int width, const float* src, int src_cols, int src_col, float* dst,
                  int dst_cols, int dst_col, bool accumulate, void* stream);
// y[r, c] = x[r, c] * mul[c] + add[c] over [rows, cols] (per-column affine).
void affine_columns(int rows, int cols, const float* x, const float* mul, const float* add,
                    float* y, void* stream);
// y[r, c] = (x[r, c] - mean[c]) / std[c] for c < count, else x[r, c] (IEEE
// division: the CPU's bits).
void standardize_columns(int rows, int cols, int count, const float* x, const float* mean,
                         const float* std, float* y, void* stream);

// ---- pool.cu / resize.cu
void maxpool2x2_forward(int N, int C, int H, int W, const float* x, float* y, void* stream);
// dx_add, when given, is added to dx as it is written.
void maxpool2x2_backward(int N, int C, int H, int W, const float* x, const float* dy, float* dx,
                         const float* dx_add, void* stream);
void upsample_nearest2x_forward(int N, int C, int H, int W, const float* x, float* y,
                                void* stream);
void upsample_nearest2x_backward(int N, int C, int H, int W, const float* dy, float* dx,
                                 void* stream);
// The hourglass merge: y = a + upsample_nearest2x(low), a [N,C,2H,2W], low [N,C,H,W].
void upsample_add_forward(int N, int C, int H, int W, const float* a, const float* low, float* y,
                          void* stream);
// The same two forwards on 16-bit activations (t: F16 or BF16, every tensor).
void maxpool2x2_forward16(int N, int C, int H, int W, DType t, const void* x, void* y,
                          void* stream);
void upsample_add_forward16(int N, int C, int H, int W, DType t, const void* a, const void* low,
                            void* y, void* stream);
void bilinear_forward(int N, int C, int H, int W, int OH, int OW, ResizeMode mode,
                      const float* x, float* y, void* stream);
void bilinear_backward(int N, int C, int H, int W, int OH, int OW, ResizeMode mode,
                       const float* dy, float* dx, void* stream);

// ---- dropout.cu: the mask comes from the same counter hash as cpu::dropout_uniform.
void dropout_forward(int64_t n, float p, uint64_t seed, const float* x, float* y, uint8_t* mask,
                     void* stream);
void dropout_backward(int64_t n, float p, const uint8_t* mask, const float* dy, float* dx,
                      void* stream);

// ---- softargmax.cu: one block per heatmap row, warp-shuffle reductions.
void softargmax_forward(int NJ, int H, int W, float beta, const float* heat, float* prob,
                        float* coords, void* stream);
void softargmax_backward(int NJ, int H, int W, float beta, const float* prob,
                         const float* dcoords, float* dheat, void* stream);

// ---- grad_reverse.cu
void grad_reverse_forward(int64_t n, const float* x, float* y, void* stream);
void grad_reverse_backward(int64_t n, float lambda, const float* dy, float* dx, void* stream);

// ---- loss.cu: forwards return the scalar loss (they synchronise `stream`).
float heatmap_mse_forward(int NJ, int HW, const float* pred, const float* target,
                          const float* joint_weight, void* stream);
void heatmap_mse_backward(int NJ, int HW, const float* pred, const float* target,
                          const float* joint_weight, float dloss, float* dpred, void* stream);
float cross_entropy_forward(int N, int T, int C, const float* logits, const int32_t* labels,
                            void* stream);
void cross_entropy_backward(int N, int T, int C, const float* logits, const int32_t* labels,
                            float dloss, float* dlogits, void* stream);
float l1_forward(int64_t n, const float* pred, const float* target, void* stream);
void l1_backward(int64_t n, const float* pred, const float* target, float dloss, float* dpred,
                 void* stream);

// ---- optimizer.cu: the element-wise update steps of nn/optimizer.cpp.
// momentum_buf may be nullptr (momentum 0).
void rmsprop_update(int64_t n, float lr, float alpha, float eps, float weight_decay,
                    float momentum, float* param, const float* grad, float* square_avg,
                    float* momentum_buf, void* stream);
// step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t), computed by the caller.
void adam_update(int64_t n, float step_size, float bc2_sqrt, float beta1, float beta2, float eps,
                 float weight_decay, float* param, const float* grad, float* exp_avg,
                 float* exp_avg_sq, void* stream);
// sum of squares of x into *out (device scalar, overwritten).
// Rows of w [rows, cols] with an L2 norm above max_norm scaled by
// max_norm / (norm + 1e-7), the norm summed in double (nn::apply_max_norm).
void max_norm_rows(int64_t rows, int64_t cols, float max_norm, float* w, void* stream);
void sum_squares(int64_t n, const float* x, float* out, void* stream);

// ---- lifter_persistent.cu: a whole batch-1 MLP program in one cooperative launch.
// Every step is a fused linear layer on a vector: v = W x + b, then the optional
// BatchNorm, ReLU and residual; x is ws[in_off, in_off + in_dim). Its result goes
// to up to four destinations (a concat buffer, a pose buffer through a joint map
// with an affine denormalisation). Steps of one phase run concurrently, phases
// are separated by grid-wide barriers.
struct MlpDest {
  int buffer = 0;             // 0: the workspace, 1 + b: pose output b
  int offset = 0;             // element offset in that buffer
  const int* map = nullptr;   // device [out_dim]: element index per row (nullptr: row)
  const float* mul = nullptr; // device, indexed like the buffer: v * mul + add (nullptr: none)
  const float* add = nullptr;
};
struct MlpStep {
  const float* w = nullptr;   // [out_dim, in_dim] row-major
  const float* b = nullptr;   // [out_dim] or nullptr
  BatchNormPtrs bn;
  int relu = 0;
  int in_off = 0, in_dim = 0, out_dim = 0;  // in_off -1: the program's input vector
  int res_off = -1;           // workspace offset of the residual, -1: none
  int ndest = 0;
  MlpDest dest[4];
};
constexpr int kMlpMaxOutputs = 4;
struct MlpProgram {
  const MlpStep* steps = nullptr;    // device, in phase order
  const int* phase_begin = nullptr;  // device [phases + 1]
  int phases = 0;
  float* ws = nullptr;               // device workspace
  const float* input = nullptr;      // device [input_dim]
  int input_dim = 0;
  // Copies of the input into the concat buffers (done in phase 0).
  const int* input_copies = nullptr; // device: workspace offsets
  int n_input_copies = 0;
  float* outputs[kMlpMaxOutputs] = {};  // pose buffers
  int output_dim = 0;                // elements per pose buffer; [0, zero_prefix) are set to 0
  int zero_prefix = 0;
  int max_phase_rows = 0;            // rows of the widest phase (sizes the prefetching grid)
};
// Runs the program with one launch on `stream`: a cooperative grid (2 blocks
// per multiprocessor, grid barriers); with MlpLaunch::Cluster (sm_90+), one
// thread-block cluster (8 or 16 blocks, hardware cluster barriers); with
// MlpLaunch::Prefetch, a cooperative grid of one warp per row of the widest
// phase whose warps load their next row's weights before each barrier.
enum class MlpLaunch { Cooperative, Cluster, Prefetch };
void set_mlp_launch(MlpLaunch m);
MlpLaunch mlp_launch();
bool mlp_cluster_supported();
void mlp_program_run(const MlpProgram& prog, void* stream);
// Whether this device can run it (cooperative launch support).
bool mlp_program_supported();

#ifdef DOFPOSE_WITH_CUDNN
// ---- cudnn_conv.cu (only with -DDOFPOSE_CUDNN=ON): cuDNN's forward convolution,
// a reference for results and speed; the models never call it.
void cudnn_conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                          float* y, void* stream);
std::string cudnn_version();
#endif

}  // namespace dofpose::cuda_kernels
