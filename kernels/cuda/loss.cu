// Training losses on CUDA, the twins of cpu/loss.cpp.
//
// A forward reduces on the device in two fixed-order stages: stage 1 runs a
// grid whose size depends only on the problem size and leaves one partial per
// block; stage 2, a single block, folds the partials in index order and forms
// the loss. Both stages use warp shuffles and shared memory, no atomics, so the
// loss is bitwise reproducible. The forward then copies the result back (the
// only host synchronisation in the CUDA kernels). Sums run in double, as on the
// CPU. The partials live in a fixed-size file-static device array
// (kMaxBlocks entries), so no call allocates.
//
// Cross-entropy's backward needs the number of labelled outputs before it can
// scale; it runs the same two counting stages into the device result and the
// gradient kernel reads the count there, without a round trip to the host.
// Bad labels (not -1 and not in [0, C)) make the forward throw as on the CPU;
// the backward cannot throw without synchronising, so it writes NaN rows.
#include <climits>
#include <cmath>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/reduce.cuh"

namespace dofpose::cuda_kernels {

namespace {
constexpr int kThreads = 256;  // a multiple of 32
constexpr int kWarps = kThreads / 32;
constexpr int kMaxBlocks = 1024;         // stage-1 grid cap = partials
constexpr long long kNone = LLONG_MAX;   // "no bad label" for the min-reduction
cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// One block's share of a loss: sum of terms, labelled outputs, first bad label.
struct Partial {
  double sum;
  long long count;
  long long first_bad;
};
struct Result {
  float loss;
  int unused;
  long long count;
  long long first_bad;
};

// Shared by every loss in this file: the stream order keeps calls apart, but
// concurrent losses on two different streams would race here.
__device__ Partial g_partials[kMaxBlocks];
__device__ Result g_result;

int grid_for(int64_t items, int per_block) {
  const int64_t b = (items + per_block - 1) / per_block;
  return int(b < kMaxBlocks ? (b > 0 ? b : 1) : kMaxBlocks);
}

// ---- fixed-order reductions

__device__ __forceinline__ long long warp_sum(long long v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ long long warp_min(long long v) {
  for (int o = 16; o > 0; o >>= 1) {
    const long long u = __shfl_down_sync(0xffffffffu, v, o);
    v = u < v ? u : v;
  }
  return v;
}

// Reduces every thread's Partial over the block; the result is valid in thread 0.
__device__ Partial block_reduce(Partial p) {
  __shared__ Partial warp_part[kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  p.sum = warp_sum(p.sum);
  p.count = warp_sum(p.count);
  p.first_bad = warp_min(p.first_bad);
  if (lane == 0) warp_part[warp] = p;
  __syncthreads();
  Partial r{0.0, 0, kNone};
  if (warp == 0) {
    if (lane < kWarps) r = warp_part[lane];
    r.sum = warp_sum(r.sum);
    r.count = warp_sum(r.count);
    r.first_bad = warp_min(r.first_bad);
  }
  __syncthreads();  // warp_part may be reused by a later call
  return r;
}

// Stage 2: one block folds the stage-1 partials in index order and forms the
// loss: total / denom, or total / count when denom <= 0 (cross-entropy; 0 when
// nothing is labelled).
__global__ void finish_kernel(int parts, double denom) {
  Partial p{0.0, 0, kNone};
  for (int b = threadIdx.x; b < parts; b += kThreads) {
    const Partial q = g_partials[b];
    p.sum += q.sum;
    p.count += q.count;
    p.first_bad = q.first_bad < p.first_bad ? q.first_bad : p.first_bad;
  }
  p = block_reduce(p);
  if (threadIdx.x == 0) {
    float loss;
    if (denom > 0)
      loss = float(p.sum / denom);
    else
      loss = p.count ? float(p.sum / double(p.count)) : 0.f;
    g_result = Result{loss, 0, p.count, p.first_bad};
  }
}

Result finish(int parts, double denom, cudaStream_t stream) {
  finish_kernel<<<1, kThreads, 0, stream>>>(parts, denom);
  DOFPOSE_CUDA_LAUNCH_CHECK("loss finish");
  Result r{};
  DOFPOSE_CUDA_CHECK(
      cudaMemcpyFromSymbolAsync(&r, g_result, sizeof(Result), 0, cudaMemcpyDeviceToHost, stream));
  DOFPOSE_CUDA_CHECK(cudaStreamSynchronize(stream));
  return r;
}

// ---- heatmap MSE

void check_mse(int NJ, int HW) {
  DOFPOSE_CHECK(NJ >= 1 && HW >= 1, "heatmap_mse: expected [NJ>=1, HW>=1], got [", NJ, ", ", HW,
                "]");
}

// Block b owns rows b, b + gridDim.x, ...: each row's sum of squares is a block
// reduction, weighted and added to the block's partial in row order.
__global__ void mse_rows_kernel(int NJ, int HW, const float* pred, const float* target,
                                const float* joint_weight) {
  double acc = 0;  // meaningful in thread 0
  for (int j = blockIdx.x; j < NJ; j += gridDim.x) {
    const int64_t base = int64_t(j) * HW;
    double sq = 0;
    for (int p = threadIdx.x; p < HW; p += kThreads) {
      const double d = double(pred[base + p]) - target[base + p];
      sq += d * d;
    }
    sq = block_sum(sq);
    if (threadIdx.x == 0) acc += (joint_weight ? joint_weight[j] : 1.0) * sq;
  }
  if (threadIdx.x == 0) g_partials[blockIdx.x] = Partial{acc, 0, kNone};
}

__global__ void mse_backward_kernel(int64_t total, int NJ, int HW, const float* pred,
                                    const float* target, const float* joint_weight, float dloss,
                                    float* dpred) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t j = i / HW;
    const float k =
        float(2.0 * dloss * (joint_weight ? joint_weight[j] : 1.0) / (double(NJ) * HW));
    dpred[i] = k * (pred[i] - target[i]);
  }
}

// ---- cross-entropy: one warp per C-way output (lanes stride over the classes)

// log(sum(exp(z))) of one output, to every lane: the max in float (fmax, as the
// CPU's std::fmax), the exponentials and their sum in double.
__device__ double warp_log_sum_exp(int C, const float* z, int lane) {
  float zmax = -INFINITY;
  for (int c = lane; c < C; c += 32) zmax = fmaxf(zmax, z[c]);
  zmax = __shfl_sync(0xffffffffu, warp_max(zmax), 0);
  double sum = 0;
  for (int c = lane; c < C; c += 32) sum += exp(double(z[c]) - zmax);
  sum = __shfl_sync(0xffffffffu, warp_sum(sum), 0);
  return zmax + log(sum);
}

__device__ __forceinline__ bool label_ok(int32_t label, int C) {
  return label == -1 || (label >= 0 && label < C);
}

// Stage 1 of the forward (with_loss) or of the label count (not with_loss).
__global__ void ce_partials_kernel(int64_t outputs, int C, const float* logits,
                                   const int32_t* labels, bool with_loss) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * kWarps;
  Partial p{0.0, 0, kNone};  // accumulated by lane 0 of each warp
  for (int64_t i = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5); i < outputs; i += warps) {
    const int32_t label = labels[i];  // the same for the whole warp
    if (!label_ok(label, C)) {
      if (lane == 0 && i < p.first_bad) p.first_bad = i;
      continue;
    }
    if (label == -1) continue;
    if (lane == 0) ++p.count;
    if (!with_loss) continue;
    const float* z = logits + i * C;
    const double lse = warp_log_sum_exp(C, z, lane);
    if (lane == 0) p.sum += lse - z[label];
  }
  p = block_reduce(p);
  if (threadIdx.x == 0) g_partials[blockIdx.x] = p;
}

__global__ void ce_backward_kernel(int64_t outputs, int C, const float* logits,
                                   const int32_t* labels, float dloss, float* dlogits) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * kWarps;
  const long long count = g_result.count;  // written by the counting stages before us
  const double k = count ? double(dloss) / double(count) : 0.0;
  for (int64_t i = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5); i < outputs; i += warps) {
    const int32_t label = labels[i];
    const float* z = logits + i * C;
    float* d = dlogits + i * C;
    if (label == -1 || !label_ok(label, C)) {
      const float v = label == -1 ? 0.f : NAN;  // NaN flags a bad label (see the top)
      for (int c = lane; c < C; c += 32) d[c] = v;
      continue;
    }
    // d/dz of (logsumexp(z) - z[label]) = softmax(z) - onehot(label).
    const double lse = warp_log_sum_exp(C, z, lane);
    for (int c = lane; c < C; c += 32)
      d[c] = float(k * (exp(double(z[c]) - lse) - (c == label ? 1.0 : 0.0)));
  }
}

void check_ce(int N, int T, int C) {
  DOFPOSE_CHECK(N >= 0 && T >= 0 && C >= 1, "cross_entropy: expected logits [N, T, C>=1], got [",
                N, ", ", T, ", ", C, "]");
}

// ---- L1

void check_l1(int64_t n) {
  DOFPOSE_CHECK(n >= 1, "l1_loss: expected at least one element, got ", n);
}

__global__ void l1_partials_kernel(int64_t n, const float* pred, const float* target) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  double acc = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    acc += fabs(double(pred[i]) - target[i]);
  acc = block_sum(acc);
  if (threadIdx.x == 0) g_partials[blockIdx.x] = Partial{acc, 0, kNone};
}

__global__ void l1_backward_kernel(int64_t n, float k, const float* pred, const float* target,
                                   float* dpred) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float d = pred[i] - target[i];
    dpred[i] = d > 0.f ? k : (d < 0.f ? -k : 0.f);  // sign(0) = 0, as torch.sign
  }
}

int elementwise_blocks(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return int(b < 65535 * 16 ? (b > 0 ? b : 1) : 65535 * 16);
}
}  // namespace

float heatmap_mse_forward(int NJ, int HW, const float* pred, const float* target,
                          const float* joint_weight, void* stream) {
  check_mse(NJ, HW);
  const int grid = NJ < kMaxBlocks ? NJ : kMaxBlocks;
  mse_rows_kernel<<<grid, kThreads, 0, as_stream(stream)>>>(NJ, HW, pred, target, joint_weight);
  DOFPOSE_CUDA_LAUNCH_CHECK("heatmap_mse_forward");
  return finish(grid, double(NJ) * HW, as_stream(stream)).loss;
}

void heatmap_mse_backward(int NJ, int HW, const float* pred, const float* target,
                          const float* joint_weight, float dloss, float* dpred, void* stream) {
  check_mse(NJ, HW);
  if (!dpred) return;
  const int64_t total = int64_t(NJ) * HW;
  mse_backward_kernel<<<elementwise_blocks(total), kThreads, 0, as_stream(stream)>>>(
      total, NJ, HW, pred, target, joint_weight, dloss, dpred);
  DOFPOSE_CUDA_LAUNCH_CHECK("heatmap_mse_backward");
}

float cross_entropy_forward(int N, int T, int C, const float* logits, const int32_t* labels,
                            void* stream) {
  check_ce(N, T, C);
  const int64_t outputs = int64_t(N) * T;
  if (outputs == 0) return 0.f;  // nothing labelled: no signal (as the CPU)
  const int grid = grid_for(outputs, kWarps);
  ce_partials_kernel<<<grid, kThreads, 0, as_stream(stream)>>>(outputs, C, logits, labels, true);
  DOFPOSE_CUDA_LAUNCH_CHECK("cross_entropy_forward");
  const Result r = finish(grid, 0.0, as_stream(stream));
  if (r.first_bad != kNone) {
    int32_t label = 0;  // fetch the offending value for the CPU's message
    DOFPOSE_CUDA_CHECK(cudaMemcpy(&label, labels + r.first_bad, sizeof(label),
                                  cudaMemcpyDeviceToHost));
    fail("cross_entropy: labels[", int64_t(r.first_bad), "] = ", label,
         ", expected -1 (ignore) or a class in [0, ", C, ")");
  }
  return r.loss;
}

void cross_entropy_backward(int N, int T, int C, const float* logits, const int32_t* labels,
                            float dloss, float* dlogits, void* stream) {
  check_ce(N, T, C);
  if (!dlogits) return;
  const int64_t outputs = int64_t(N) * T;
  if (outputs == 0) return;
  const int grid = grid_for(outputs, kWarps);
  cudaStream_t s = as_stream(stream);
  // The labelled count, left in g_result.count for the gradient kernel.
  ce_partials_kernel<<<grid, kThreads, 0, s>>>(outputs, C, logits, labels, false);
  DOFPOSE_CUDA_LAUNCH_CHECK("cross_entropy_backward (count)");
  finish_kernel<<<1, kThreads, 0, s>>>(grid, 0.0);
  DOFPOSE_CUDA_LAUNCH_CHECK("cross_entropy_backward (finish count)");
  ce_backward_kernel<<<grid, kThreads, 0, s>>>(outputs, C, logits, labels, dloss, dlogits);
  DOFPOSE_CUDA_LAUNCH_CHECK("cross_entropy_backward");
}

float l1_forward(int64_t n, const float* pred, const float* target, void* stream) {
  check_l1(n);
  const int grid = grid_for(n, kThreads);
  l1_partials_kernel<<<grid, kThreads, 0, as_stream(stream)>>>(n, pred, target);
  DOFPOSE_CUDA_LAUNCH_CHECK("l1_forward");
  return finish(grid, double(n), as_stream(stream)).loss;
}

void l1_backward(int64_t n, const float* pred, const float* target, float dloss, float* dpred,
                 void* stream) {
  check_l1(n);
  if (!dpred) return;
  const float k = float(double(dloss) / double(n));
  l1_backward_kernel<<<elementwise_blocks(n), kThreads, 0, as_stream(stream)>>>(n, k, pred,
                                                                                target, dpred);
  DOFPOSE_CUDA_LAUNCH_CHECK("l1_backward");
}

}  // namespace dofpose::cuda_kernels
