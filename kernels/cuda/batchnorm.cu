// BatchNorm CUDA kernels (PyTorch 1.13 semantics, the twins of cpu/batchnorm.cpp).
//
// One block owns one channel: it reduces the channel's N*HW values, then applies
// the per-channel affine map to the same values. Owning the whole channel means
// no scratch memory, no second launch and no float atomics: every sum is a
// per-thread partial in a fixed stride order followed by a fixed warp-shuffle /
// shared-memory tree, so results are bitwise reproducible from run to run.
//
// As on the CPU the sums run in double and every per-channel scalar is formed
// with the CPU's expression and rounding, so outputs agree to float rounding.
// The CPU's variance is two-pass (mean, then squared deviations); here both
// statistics come from one read of x, shifted by one of its values
// (shifted_stats), so a training forward reads its input twice, not three times.
// [N, C] inputs (HW = 1: the lifters' MLP layers) have their own training
// kernels: a block owns 8 adjacent channels and its 256 threads are 32 row
// slots x 8 channels, so a warp reads 4 rows x 32 contiguous bytes (4 sectors).
// A block per channel read a column, one sector per lane: 32 sectors a request
// (counted by the emulator's memory profile, docs/cuda.md).
//
// The training kernels take an optional activation tail (kAct): ReLU then
// dropout applied as each value is written, and its gradient recomputed from
// one mask byte as each dy is read -- the fused BatchNorm -> ReLU -> Dropout of
// the lifters' MLP layers and the bottlenecks' pre-activations, one launch each
// way instead of three, and no stored BatchNorm output.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/dropout_hash.cuh"
#include "kernels/cuda/reduce.cuh"

namespace dofpose::cuda_kernels {

namespace {
constexpr int kThreads = 512;  // per channel block; a multiple of 32
cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// Walks the m = N*HW values of channel c: element k is (n, p) = (k / HW, k % HW).
// 32-bit division is enough: the host checks m < 2^31.
struct ChannelWalk {
  int C, HW;
  __device__ __forceinline__ int64_t offset(int c, int k) const {
    const int n = k / HW, p = k - n * HW;
    return (int64_t(n) * C + c) * HW + p;
  }
};

// The tail after a training BatchNorm (cpu::batchnorm_relu_dropout_*): mask[i]
// is 1 where the gradient passes (kept by dropout, not cut by the ReLU).
struct ReluDropout {
  float p = 0.f, keep_scale = 1.f;
  uint64_t seed = 0;
  uint8_t* mask = nullptr;
  const float* residual = nullptr;  // added last when given (a residual block's skip)
  const float* dx_add = nullptr;    // backward: added to dx (the skip's gradient)
};

// dx[i] = v, plus the gradient reaching x by another path when there is one
// (__fadd_rn: v stays a rounded product, as the CPU's separate accumulate).
__device__ __forceinline__ void store_dx(float* dx, int64_t i, float v, const ReluDropout& act) {
  dx[i] = act.dx_add ? __fadd_rn(v, act.dx_add[i]) : v;
}

// y[i] from the BatchNorm output z, with the tail if kAct: the CPU's
// relu_forward then dropout_forward, select for select.
template <bool kAct>
__device__ __forceinline__ void store_output(float* y, int64_t i, float z, const ReluDropout& act) {
  if constexpr (kAct) {
    const bool keep = act.p == 0.f || dropout_uniform(act.seed, uint64_t(i)) >= act.p;
    const float h = keep ? (z < 0.f ? 0.f : z) * act.keep_scale : 0.f;
    // __fadd_rn: the product above stays rounded (no FMA), as the CPU's
    // separate add_forward pass.
    y[i] = act.residual ? __fadd_rn(act.residual[i], h) : h;
    act.mask[i] = keep && !(z <= 0.f) ? 1 : 0;  // relu_backward cuts z <= 0 (NaN passes)
  } else {
    y[i] = z;
  }
}

// The gradient at the BatchNorm output: dy, or through the tail if kAct. dy
// is read whatever the mask says: with about half the lanes masked a warp
// fetches every sector anyway, and a branch around the load only diverges it.
template <bool kAct>
__device__ __forceinline__ float bn_grad(const float* dy, int64_t i, const ReluDropout& act) {
  const float g = dy[i];
  if constexpr (kAct) return act.mask[i] ? g * act.keep_scale : 0.f;
  return g;
}

void check_shape(const BatchNormShape& s, const char* op) {
  DOFPOSE_CHECK(s.N >= 1 && s.C >= 1 && s.HW >= 1, op, ": expected N, C, HW >= 1, got N=", s.N,
                " C=", s.C, " HW=", s.HW);
  DOFPOSE_CHECK(int64_t(s.N) * s.HW < (int64_t(1) << 31), op, ": N*HW = ",
                int64_t(s.N) * s.HW, " values per channel is more than this kernel indexes");
}

// Mean and biased variance from sums of d = x - shift0 and of d * d, shift0
// being one of the channel's own values: the statistics in one read of x
// instead of two (two-pass: the mean, then the squared deviations). In double,
// and shifted so that var = E[d^2] - E[d]^2 cancels only as much as the
// (mean - shift0)^2 / var of the data: for float inputs the result agrees with
// the CPU's two-pass statistics to float rounding (parity test: channels at
// 1e4 with a standard deviation of 0.01).
__device__ __forceinline__ void shifted_stats(double s1, double s2, double shift0, int64_t m,
                                              double& mean, double& var) {
  const double d_mean = s1 / double(m);
  mean = shift0 + d_mean;
  var = fmax(s2 / double(m) - d_mean * d_mean, 0.0);
}

template <bool kAct>
__global__ void forward_train_kernel(int m, ChannelWalk walk, const float* x, const float* gamma,
                                     const float* beta, float* running_mean, float* running_var,
                                     float momentum, float eps, float* y, float* save_mean,
                                     float* save_invstd, ReluDropout act) {
  const int c = blockIdx.x;
  __shared__ float s_mean, s_scale, s_shift;
  // One pass for both statistics (see shifted_stats), one to write y.
  const double shift0 = x[walk.offset(c, 0)];
  double s1 = 0, s2 = 0;
  for (int k = threadIdx.x; k < m; k += kThreads) {
    const double d = double(x[walk.offset(c, k)]) - shift0;
    s1 += d;
    s2 += d * d;
  }
  double mean, var;
  shifted_stats(block_sum(s1), block_sum(s2), shift0, m, mean, var);
  if (threadIdx.x == 0) {
    const double invstd = 1.0 / sqrt(var + double(eps));
    const float g = gamma ? gamma[c] : 1.f;
    s_mean = float(mean);
    s_scale = float(invstd * g);
    s_shift = beta ? beta[c] : 0.f;
    if (save_mean) save_mean[c] = float(mean);
    if (save_invstd) save_invstd[c] = float(invstd);
    if (running_mean)
      running_mean[c] = float((1.0 - momentum) * running_mean[c] + double(momentum) * mean);
    if (running_var) {
      const double unbiased = var * double(m) / double(m - 1);
      running_var[c] = float((1.0 - momentum) * running_var[c] + double(momentum) * unbiased);
    }
  }
  __syncthreads();
  const float fmean = s_mean, scale = s_scale, shift = s_shift;
  for (int k = threadIdx.x; k < m; k += kThreads) {
    const int64_t i = walk.offset(c, k);
    store_output<kAct>(y, i, (x[i] - fmean) * scale + shift, act);
  }
}

// ---- [N, C] (HW = 1): 8 channels a block, 32 row slots (see the top of the file)
constexpr int kColChannels = 8, kColSlots = 32;  // kColChannels * kColSlots threads
static_assert(kColChannels * kColSlots == 256, "the column kernels launch 256 threads");

// The sum over all row slots of each channel's per-thread partial, in slot
// order (deterministic), to every thread of the channel.
__device__ double column_sum(double v, double (*part)[kColChannels]) {
  const int ch = threadIdx.x % kColChannels, slot = threadIdx.x / kColChannels;
  part[slot][ch] = v;
  __syncthreads();
  double t = 0;
  for (int r = 0; r < kColSlots; ++r) t += part[r][ch];
  __syncthreads();  // everyone has read part before the next call rewrites it
  return t;
}

template <bool kAct>
__global__ void forward_train_columns_kernel(int N, int C, const float* x, const float* gamma,
                                             const float* beta, float* running_mean,
                                             float* running_var, float momentum, float eps,
                                             float* y, float* save_mean, float* save_invstd,
                                             ReluDropout act) {
  __shared__ double part[kColSlots][kColChannels];
  const int slot = threadIdx.x / kColChannels;
  const int c = blockIdx.x * kColChannels + threadIdx.x % kColChannels;
  const bool live = c < C;  // every thread still takes part in the barriers
  const double shift0 = live ? x[c] : 0.0;  // row 0 (shifted_stats)
  double s1 = 0, s2 = 0;
  if (live)
    for (int n = slot; n < N; n += kColSlots) {
      const double d = double(x[int64_t(n) * C + c]) - shift0;
      s1 += d;
      s2 += d * d;
    }
  const double t1 = column_sum(s1, part), t2 = column_sum(s2, part);
  if (!live) return;
  double mean, var;
  shifted_stats(t1, t2, shift0, N, mean, var);
  // The scalars of forward_train_kernel, formed alike by every thread of the channel.
  const double invstd = 1.0 / sqrt(var + double(eps));
  const float g = gamma ? gamma[c] : 1.f;
  const float fmean = float(mean), scale = float(invstd * g), shift = beta ? beta[c] : 0.f;
  if (slot == 0) {
    if (save_mean) save_mean[c] = float(mean);
    if (save_invstd) save_invstd[c] = float(invstd);
    if (running_mean)
      running_mean[c] = float((1.0 - momentum) * running_mean[c] + double(momentum) * mean);
    if (running_var) {
      const double unbiased = var * double(N) / double(N - 1);
      running_var[c] = float((1.0 - momentum) * running_var[c] + double(momentum) * unbiased);
    }
  }
  for (int n = slot; n < N; n += kColSlots) {
    const int64_t i = int64_t(n) * C + c;
    store_output<kAct>(y, i, (x[i] - fmean) * scale + shift, act);
  }
}

template <bool kAct>
__global__ void backward_train_columns_kernel(int N, int C, const float* x, const float* gamma,
                                              const float* save_mean, const float* save_invstd,
                                              const float* dy, float* dx, float* dgamma,
                                              float* dbeta, ReluDropout act) {
  __shared__ double part[kColSlots][kColChannels];
  const int slot = threadIdx.x / kColChannels;
  const int c = blockIdx.x * kColChannels + threadIdx.x % kColChannels;
  const bool live = c < C;
  const double mean = live ? save_mean[c] : 0.0, invstd = live ? save_invstd[c] : 0.0;
  double a = 0, b = 0;
  if (live)
    for (int n = slot; n < N; n += kColSlots) {
      const int64_t i = int64_t(n) * C + c;
      const float g = bn_grad<kAct>(dy, i, act);
      a += g;
      b += double(g) * (double(x[i]) - mean);
    }
  const double sum_dy = column_sum(a, part), sum_dy_xc = column_sum(b, part);
  if (!live) return;
  if (slot == 0) {
    if (dgamma) dgamma[c] = float(sum_dy_xc * invstd);
    if (dbeta) dbeta[c] = float(sum_dy);
  }
  if (!dx) return;
  const float g = gamma ? gamma[c] : 1.f;  // backward_train_kernel's expressions
  const float mean_dy = float(sum_dy / double(N));
  const float k_ = float(sum_dy_xc * invstd * invstd / double(N));
  const float fmean = float(mean), coef = float(invstd * g);
  for (int n = slot; n < N; n += kColSlots) {
    const int64_t i = int64_t(n) * C + c;
    store_dx(dx, i, (bn_grad<kAct>(dy, i, act) - mean_dy - (x[i] - fmean) * k_) * coef, act);
  }
}

int column_blocks(const BatchNormShape& s) { return (s.C + kColChannels - 1) / kColChannels; }

__global__ void forward_infer_kernel(int m, ChannelWalk walk, const float* x, const float* gamma,
                                     const float* beta, const float* running_mean,
                                     const float* running_var, float eps, float* y) {
  const int c = blockIdx.x;
  // Every thread forms the same scalars (cheaper than a broadcast through shared).
  const double invstd = 1.0 / sqrt(double(running_var[c]) + double(eps));
  const float scale = float(invstd * (gamma ? gamma[c] : 1.f));
  const float shift = beta ? beta[c] : 0.f;
  const float mean = running_mean[c];
  for (int k = threadIdx.x; k < m; k += kThreads) {
    const int64_t i = walk.offset(c, k);
    y[i] = (x[i] - mean) * scale + shift;
  }
}

// sum(g) and sum(g * (x - mean)) over channel c, g = bn_grad<kAct>, in double,
// to every thread.
template <bool kAct>
__device__ void grad_sums(int m, ChannelWalk walk, int c, const float* x, const float* dy,
                          const ReluDropout& act, double mean, double& sum_dy,
                          double& sum_dy_xc) {
  double a = 0, b = 0;
  for (int k = threadIdx.x; k < m; k += kThreads) {
    const int64_t i = walk.offset(c, k);
    const float g = bn_grad<kAct>(dy, i, act);
    a += g;
    b += double(g) * (double(x[i]) - mean);
  }
  sum_dy = block_sum(a);
  sum_dy_xc = block_sum(b);
}

template <bool kAct>
__global__ void backward_train_kernel(int m, ChannelWalk walk, const float* x,
                                      const float* gamma, const float* save_mean,
                                      const float* save_invstd, const float* dy, float* dx,
                                      float* dgamma, float* dbeta, ReluDropout act) {
  const int c = blockIdx.x;
  const double mean = save_mean[c], invstd = save_invstd[c];
  double sum_dy, sum_dy_xc;
  grad_sums<kAct>(m, walk, c, x, dy, act, mean, sum_dy, sum_dy_xc);
  if (threadIdx.x == 0) {
    if (dgamma) dgamma[c] = float(sum_dy_xc * invstd);  // sum(dy * xhat)
    if (dbeta) dbeta[c] = float(sum_dy);
  }
  if (!dx) return;
  // dx = gamma*invstd * (dy - mean(dy) - xhat * mean(dy*xhat)), with
  // xhat * mean(dy*xhat) = (x - mean) * k. Every thread holds the same sums.
  const float g = gamma ? gamma[c] : 1.f;
  const float mean_dy = float(sum_dy / double(m));
  const float k_ = float(sum_dy_xc * invstd * invstd / double(m));
  const float fmean = float(mean), coef = float(invstd * g);
  for (int k = threadIdx.x; k < m; k += kThreads) {
    const int64_t i = walk.offset(c, k);
    store_dx(dx, i, (bn_grad<kAct>(dy, i, act) - mean_dy - (x[i] - fmean) * k_) * coef, act);
  }
}

__global__ void backward_infer_kernel(int m, ChannelWalk walk, const float* x,
                                      const float* gamma, const float* running_mean,
                                      const float* running_var, float eps, const float* dy,
                                      float* dx, float* dgamma, float* dbeta) {
  const int c = blockIdx.x;
  const double invstd = 1.0 / sqrt(double(running_var[c]) + double(eps));
  if (dgamma || dbeta) {  // uniform over the block, so block_sum's barriers are safe
    double sum_dy, sum_dy_xc;
    grad_sums<false>(m, walk, c, x, dy, ReluDropout{}, double(running_mean[c]), sum_dy,
                     sum_dy_xc);
    if (threadIdx.x == 0) {
      if (dgamma) dgamma[c] = float(sum_dy_xc * invstd);
      if (dbeta) dbeta[c] = float(sum_dy);
    }
  }
  if (!dx) return;
  const float coef = float(invstd * (gamma ? gamma[c] : 1.f));
  for (int k = threadIdx.x; k < m; k += kThreads) {
    const int64_t i = walk.offset(c, k);
    dx[i] = dy[i] * coef;
  }
}

// weight[k, :] *= scale_k and bias[k] = (bias[k] - mean_k) * scale_k + beta_k, with
// scale_k = gamma_k / sqrt(var_k + eps) in double as on the CPU. The weight and
// bias updates are independent, so one launch does both.
__global__ void fold_kernel(int K, int64_t per_channel, float* weight, float* bias,
                            const float* gamma, const float* beta, const float* running_mean,
                            const float* running_var, float eps) {
  const int64_t total = int64_t(K) * per_channel;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int k = int(i / per_channel);
    const double scale = double(gamma[k]) / sqrt(double(running_var[k]) + double(eps));
    weight[i] = float(weight[i] * scale);
  }
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < K; k += stride) {
    const double scale = double(gamma[k]) / sqrt(double(running_var[k]) + double(eps));
    bias[k] = float((double(bias[k]) - running_mean[k]) * scale + beta[k]);
  }
}
}  // namespace

void batchnorm_forward_train(const BatchNormShape& s, const float* x, const float* gamma,
                             const float* beta, float* running_mean, float* running_var,
                             float momentum, float eps, float* y, float* save_mean,
                             float* save_invstd, void* stream) {
  check_shape(s, "batchnorm_forward_train");
  const int64_t m = int64_t(s.N) * s.HW;
  // PyTorch refuses this too: the unbiased variance would divide by zero.
  DOFPOSE_CHECK(m > 1, "batchnorm_forward_train: expected more than 1 value per channel when "
                "training, got input [", s.N, ", ", s.C, ", ", s.HW, "]");
  if (s.HW == 1)
    forward_train_columns_kernel<false><<<column_blocks(s), 256, 0, as_stream(stream)>>>(
        s.N, s.C, x, gamma, beta, running_mean, running_var, momentum, eps, y, save_mean,
        save_invstd, ReluDropout{});
  else
    forward_train_kernel<false><<<s.C, kThreads, 0, as_stream(stream)>>>(
        int(m), ChannelWalk{s.C, s.HW}, x, gamma, beta, running_mean, running_var, momentum, eps,
        y, save_mean, save_invstd, ReluDropout{});
  DOFPOSE_CUDA_LAUNCH_CHECK("batchnorm_forward_train");
}

void batchnorm_forward_infer(const BatchNormShape& s, const float* x, const float* gamma,
                             const float* beta, const float* running_mean,
                             const float* running_var, float eps, float* y, void* stream) {
  check_shape(s, "batchnorm_forward_infer");
  forward_infer_kernel<<<s.C, kThreads, 0, as_stream(stream)>>>(
      s.N * s.HW, ChannelWalk{s.C, s.HW}, x, gamma, beta, running_mean, running_var, eps, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("batchnorm_forward_infer");
}

void batchnorm_backward_train(const BatchNormShape& s, const float* x, const float* gamma,
                              const float* save_mean, const float* save_invstd, const float* dy,
                              float* dx, float* dgamma, float* dbeta, void* stream) {
  check_shape(s, "batchnorm_backward_train");
  if (!dx && !dgamma && !dbeta) return;
  if (s.HW == 1)
    backward_train_columns_kernel<false><<<column_blocks(s), 256, 0, as_stream(stream)>>>(
        s.N, s.C, x, gamma, save_mean, save_invstd, dy, dx, dgamma, dbeta, ReluDropout{});
  else
    backward_train_kernel<false><<<s.C, kThreads, 0, as_stream(stream)>>>(
        s.N * s.HW, ChannelWalk{s.C, s.HW}, x, gamma, save_mean, save_invstd, dy, dx, dgamma,
        dbeta, ReluDropout{});
  DOFPOSE_CUDA_LAUNCH_CHECK("batchnorm_backward_train");
}

void batchnorm_backward_infer(const BatchNormShape& s, const float* x, const float* gamma,
                              const float* running_mean, const float* running_var, float eps,
                              const float* dy, float* dx, float* dgamma, float* dbeta,
                              void* stream) {
  check_shape(s, "batchnorm_backward_infer");
  if (!dx && !dgamma && !dbeta) return;
  backward_infer_kernel<<<s.C, kThreads, 0, as_stream(stream)>>>(
      s.N * s.HW, ChannelWalk{s.C, s.HW}, x, gamma, running_mean, running_var, eps, dy, dx,
      dgamma, dbeta);
  DOFPOSE_CUDA_LAUNCH_CHECK("batchnorm_backward_infer");
}

void batchnorm_relu_dropout_forward_train(const BatchNormShape& s, const float* x,
                                          const float* gamma, const float* beta,
                                          float* running_mean, float* running_var,
                                          float momentum, float eps, float p, uint64_t seed,
                                          float* y, float* save_mean, float* save_invstd,
                                          uint8_t* mask, const float* residual, void* stream) {
  const char* op = "batchnorm_relu_dropout_forward_train";
  check_shape(s, op);
  DOFPOSE_CHECK(p >= 0.f && p < 1.f, op, ": drop probability p must be in [0, 1), got ", p);
  const int64_t m = int64_t(s.N) * s.HW;
  DOFPOSE_CHECK(m > 1, op, ": expected more than 1 value per channel when training, got input [",
                s.N, ", ", s.C, ", ", s.HW, "]");
  ReluDropout act;
  act.p = p;
  act.keep_scale = 1.f / (1.f - p);  // on the host, as the CPU forms it
  act.seed = seed;
  act.mask = mask;
  act.residual = residual;
  if (s.HW == 1)
    forward_train_columns_kernel<true><<<column_blocks(s), 256, 0, as_stream(stream)>>>(
        s.N, s.C, x, gamma, beta, running_mean, running_var, momentum, eps, y, save_mean,
        save_invstd, act);
  else
    forward_train_kernel<true><<<s.C, kThreads, 0, as_stream(stream)>>>(
        int(m), ChannelWalk{s.C, s.HW}, x, gamma, beta, running_mean, running_var, momentum, eps,
        y, save_mean, save_invstd, act);
  DOFPOSE_CUDA_LAUNCH_CHECK(op);
}

void batchnorm_relu_dropout_backward_train(const BatchNormShape& s, const float* x,
                                           const float* gamma, const float* save_mean,
                                           const float* save_invstd, const uint8_t* mask,
                                           float p, const float* dy, float* dx, float* dgamma,
                                           float* dbeta, const float* dx_add, void* stream) {
  const char* op = "batchnorm_relu_dropout_backward_train";
  check_shape(s, op);
  DOFPOSE_CHECK(p >= 0.f && p < 1.f, op, ": drop probability p must be in [0, 1), got ", p);
  if (!dx && !dgamma && !dbeta) return;
  ReluDropout act;
  act.p = p;
  act.keep_scale = 1.f / (1.f - p);
  act.mask = const_cast<uint8_t*>(mask);  // read only on this path
  act.dx_add = dx_add;
  if (s.HW == 1)
    backward_train_columns_kernel<true><<<column_blocks(s), 256, 0, as_stream(stream)>>>(
        s.N, s.C, x, gamma, save_mean, save_invstd, dy, dx, dgamma, dbeta, act);
  else
    backward_train_kernel<true><<<s.C, kThreads, 0, as_stream(stream)>>>(
        s.N * s.HW, ChannelWalk{s.C, s.HW}, x, gamma, save_mean, save_invstd, dy, dx, dgamma,
        dbeta, act);
  DOFPOSE_CUDA_LAUNCH_CHECK(op);
}

void batchnorm_fold(int K, int64_t per_channel, float* weight, float* bias, const float* gamma,
                    const float* beta, const float* running_mean, const float* running_var,
                    float eps, void* stream) {
  DOFPOSE_CHECK(bias != nullptr, "batchnorm_fold: the layer needs a bias tensor to fold into ",
                "(start it at zero if the layer had none)");
  if (K <= 0) return;
  constexpr int kFoldThreads = 256;
  const int64_t total = int64_t(K) * per_channel > K ? int64_t(K) * per_channel : K;
  int64_t blocks = (total + kFoldThreads - 1) / kFoldThreads;
  if (blocks > 65535 * 16) blocks = 65535 * 16;
  fold_kernel<<<int(blocks), kFoldThreads, 0, as_stream(stream)>>>(
      K, per_channel, weight, bias, gamma, beta, running_mean, running_var, eps);
  DOFPOSE_CUDA_LAUNCH_CHECK("batchnorm_fold");
}

}  // namespace dofpose::cuda_kernels
