// Per-kernel CUDA benchmarks (Google Benchmark, part of dofpose_bench in a
// CUDA-enabled build): time, GFLOP/s and GB/s for the shapes the models use.
// Each iteration is timed with CUDA events around the launches (manual time),
// so the host's launch overhead is included only as far as the GPU waits on it.
//   build-cuda/bench/dofpose_bench --benchmark_filter=cuda
// Peaks to compare with (H100 SXM): ~67 TFLOP/s FP32 (non-tensor), ~495 TFLOP/s
// TF32 dense, ~3.35 TB/s HBM3; H200: same compute, ~4.8 TB/s.
#ifdef DOFPOSE_WITH_CUDA
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>

#include "dofpose/context.h"
#include "dofpose/cuda_backend.h"
#include "dofpose/nn/lifter.h"
#include "dofpose/nn/persistent_lifter.h"
#include "dofpose/ops.h"
#include "kernels/cuda/cuda_kernels.h"

namespace {

using namespace dofpose;
namespace ck = dofpose::cuda_kernels;

// Roughly normal values (a sum of four uniforms, mean 0, variance 1) from a
// xorshift generator: cheaper than std::normal_distribution, whose fill of the
// batch-64 activation tensors ate into the benchmarks' time limit.
Tensor device_randn(Shape s, uint32_t seed) {
  uint32_t x = seed * 2654435761u + 1u;
  if (x == 0) x = 1;  // xorshift never leaves 0
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return float(x) * (1.0f / 4294967296.0f);
  };
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.f32()[i] = (next() + next() + next() + next() - 2.0f) * 1.7320508f;  // sqrt(12 / 4)
  return t.to(Device::CUDA);
}

// The device's theoretical peaks (dofpose/device_peak.h), read once.
const DevicePeak& peak() {
  static const DevicePeak p = [] {
    const DevicePeak q = device_peak(cuda::device_traits(0));
    std::fprintf(stderr, "device 0 peaks: %s\n", describe(q).c_str());
    return q;
  }();
  return p;
}

// The FLOP peak that applies to the current math mode (the tensor-core rate
// for TF32 / FP16 / BF16, the CUDA cores' for F32).
double flop_peak_gflops() {
  switch (ck::math_mode()) {
    case ck::MathMode::TF32: return peak().tf32_gflops;
    case ck::MathMode::FP16:
    case ck::MathMode::BF16: return peak().fp16_gflops;
    default: return peak().fp32_gflops;
  }
}

// Times `launch` with events on the op stream; sets GFLOP/s and GB/s counters
// and, where the device's peak is known, the same as a percentage of it
// (%FLOP: of the math mode's peak; %DRAM: of the memory bandwidth; bytes
// counted once per tensor, so a kernel served from L2 can exceed 100).
template <class F>
void time_cuda(benchmark::State& state, Context& ctx, double flops, double bytes, F launch) {
  cudaStream_t s = static_cast<cudaStream_t>(ctx.stream());
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  launch();  // warm-up (and any scratch growth)
  ctx.synchronize();
  for (auto _ : state) {
    cudaEventRecord(a, s);
    launch();
    cudaEventRecord(b, s);
    cudaEventSynchronize(b);
    float ms = 0.f;
    cudaEventElapsedTime(&ms, a, b);
    state.SetIterationTime(ms * 1e-3);
  }
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  // Rates of "percent of peak per iteration": value / time = 100 * achieved / peak.
  const double flop_peak = flop_peak_gflops() * 1e9, mem_peak = peak().dram_gbps * 1e9;
  if (flops > 0 && flop_peak > 0)
    state.counters["%FLOP"] = benchmark::Counter(100.0 * flops / flop_peak,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  if (bytes > 0 && mem_peak > 0)
    state.counters["%DRAM"] = benchmark::Counter(100.0 * bytes / mem_peak,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
}

bool have_device(benchmark::State& state) {
  if (cuda::device_count() > 0) return true;
  state.SkipWithError("no CUDA device");
  return false;
}

// Which convolution kernel runs: math mode and the default-off switches,
// set for one benchmark and back to the defaults after it.
struct KernelChoice {
  ck::MathMode math = ck::MathMode::F32;
  bool pipeline = false, tf32_mma = false, stem = false;
};
struct ScopedKernelChoice {
  explicit ScopedKernelChoice(const KernelChoice& c) { apply(c); }
  ~ScopedKernelChoice() { apply(KernelChoice{}); }
  static void apply(const KernelChoice& c) {
    ck::set_math_mode(c.math);
    ck::set_tile_pipeline(c.pipeline);
    ck::set_tf32_mma(c.tf32_mma);
    ck::set_stem_path(c.stem);
  }
};

// args: N, C, H, K, R, stride, mode (0: F32, 1: TF32, 2: TF32 on the multi-stage
// kernel (set_tile_pipeline), 3: F32 on the stem's direct kernel (set_stem_path),
// 4: FP16, 5: FP16 on the multi-stage mma.sync kernel, 6: TF32 on the multi-stage
// mma.sync kernel (set_tf32_mma))
void BM_cuda_conv2d_forward(benchmark::State& state) {
  if (!have_device(state)) return;
  const int N = int(state.range(0)), C = int(state.range(1)), H = int(state.range(2));
  const int K = int(state.range(3)), R = int(state.range(4)), stride = int(state.range(5));
  using M = ck::MathMode;
  const KernelChoice modes[] = {{M::F32},  {M::TF32}, {M::TF32, true}, {M::F32, false, false, true},
                                {M::FP16}, {M::FP16, true}, {M::TF32, true, true}};
  const ScopedKernelChoice choice(modes[state.range(6)]);
  Context ctx(Device::CUDA);
  ctx.make_current();
  ops::ConvParams p{stride, R / 2, 1};
  Tensor x = device_randn({N, C, H, H}, 1), w = device_randn({K, C, R, R}, 2), b = device_randn({K}, 3);
  const Shape ys = ops::conv2d_output_shape(x, w, p);
  Tensor y = Tensor::empty(ys, DType::F32, Device::CUDA);
  const Conv2dShape cs = ops::conv2d_shape(x, w, p);
  const double bytes = 4.0 * double(x.numel() + w.numel() + y.numel());
  time_cuda(state, ctx, double(cs.flops()), bytes, [&] { ops::conv2d_forward(x, w, b, y, p); });
  ops::set_cuda_stream(nullptr);
}
BENCHMARK(BM_cuda_conv2d_forward)
    ->ArgNames({"N", "C", "H", "K", "R", "stride", "mode"})
    ->Args({1, 3, 256, 64, 7, 2, 0})->Args({1, 3, 256, 64, 7, 2, 1})      // stem
    ->Args({1, 3, 256, 64, 7, 2, 3})->Args({64, 3, 256, 64, 7, 2, 0})
    ->Args({64, 3, 256, 64, 7, 2, 3})                                     // stem, direct kernel
    ->Args({1, 128, 64, 128, 3, 1, 0})->Args({1, 128, 64, 128, 3, 1, 1})  // bottleneck 3x3
    ->Args({1, 256, 64, 128, 1, 1, 0})->Args({1, 256, 64, 128, 1, 1, 1})  // bottleneck 1x1
    ->Args({64, 128, 64, 128, 3, 1, 0})->Args({64, 128, 64, 128, 3, 1, 1})
    ->Args({64, 128, 64, 128, 3, 1, 2})->Args({64, 128, 64, 128, 3, 1, 6})  // multi-stage TF32: WMMA, mma
    ->Args({64, 256, 64, 128, 1, 1, 0})->Args({64, 256, 64, 128, 1, 1, 1})
    ->Args({64, 256, 64, 128, 1, 1, 2})->Args({64, 256, 64, 128, 1, 1, 6})
    ->Args({64, 128, 64, 128, 3, 1, 4})->Args({64, 128, 64, 128, 3, 1, 5})  // FP16, multi-stage
    ->Args({64, 256, 64, 128, 1, 1, 4})->Args({64, 256, 64, 128, 1, 1, 5})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);

#ifdef DOFPOSE_WITH_CUDNN
// The same shapes through cuDNN (-DDOFPOSE_CUDNN=ON): the reference for speed.
void BM_cudnn_conv2d_forward(benchmark::State& state) {
  if (!have_device(state)) return;
  const int N = int(state.range(0)), C = int(state.range(1)), H = int(state.range(2));
  const int K = int(state.range(3)), R = int(state.range(4)), stride = int(state.range(5));
  ck::set_math_mode(state.range(6) ? ck::MathMode::TF32 : ck::MathMode::F32);
  Context ctx(Device::CUDA);
  ctx.make_current();
  ops::ConvParams p{stride, R / 2, 1};
  Tensor x = device_randn({N, C, H, H}, 1), w = device_randn({K, C, R, R}, 2), b = device_randn({K}, 3);
  Tensor y = Tensor::empty(ops::conv2d_output_shape(x, w, p), DType::F32, Device::CUDA);
  const Conv2dShape cs = ops::conv2d_shape(x, w, p);
  const double bytes = 4.0 * double(x.numel() + w.numel() + y.numel());
  time_cuda(state, ctx, double(cs.flops()), bytes,
            [&] { ck::cudnn_conv2d_forward(cs, x.f32(), w.f32(), b.f32(), y.f32(), ctx.stream()); });
  ck::set_math_mode(ck::MathMode::F32);
  ops::set_cuda_stream(nullptr);
}
BENCHMARK(BM_cudnn_conv2d_forward)
    ->ArgNames({"N", "C", "H", "K", "R", "stride", "tf32"})
    ->Args({1, 3, 256, 64, 7, 2, 0})->Args({1, 3, 256, 64, 7, 2, 1})
    ->Args({1, 128, 64, 128, 3, 1, 0})->Args({1, 128, 64, 128, 3, 1, 1})
    ->Args({1, 256, 64, 128, 1, 1, 0})->Args({1, 256, 64, 128, 1, 1, 1})
    ->Args({64, 128, 64, 128, 3, 1, 0})->Args({64, 128, 64, 128, 3, 1, 1})
    ->Args({64, 256, 64, 128, 1, 1, 0})->Args({64, 256, 64, 128, 1, 1, 1})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
#endif

// The fused bottleneck convs at the hourglass's shapes: conv1 (BN+ReLU
// prologue, BN+ReLU epilogue, 1x1 256->128), conv2 (3x3 128->128, BN+ReLU
// epilogue), conv3 (1x1 128->256 + residual). args: N, which (1, 2, 3), math
// (0 f32, 1 tf32, 2 fp16, and the multi-stage kernels: 3 tf32 on WMMA, 4 tf32
// on mma.sync, 5 fp16 on mma.sync; conv1's prologue reaches only mma.sync).
// time_bottleneck_conv: one of them (which: 1 conv1, 2 conv2, 3 conv3) at
// batch N, its activations (x, y, the residual) stored as `act`.
void time_bottleneck_conv(benchmark::State& state, int N, int which, DType act) {
  Context ctx(Device::CUDA);
  ctx.make_current();
  const int C = which == 1 ? 256 : 128, K = which == 3 ? 256 : 128, R = which == 2 ? 3 : 1;
  ops::ConvParams p{1, R / 2, 1};
  auto stored = [&](Tensor f) {
    if (act == DType::F32) return f;
    Tensor out = Tensor::empty(f.shape(), act, Device::CUDA);
    ops::cast(f, out);
    return out;
  };
  Tensor x = stored(device_randn({N, C, 64, 64}, 1));
  Tensor w = device_randn({K, C, R, R}, 2), b = device_randn({K}, 3);
  Tensor g = device_randn({std::max(C, K)}, 4), v = device_randn({std::max(C, K)}, 5);
  fill(v, 1.5f);
  Tensor y = Tensor::empty({N, K, 64, 64}, act, Device::CUDA);
  Tensor r = stored(device_randn({N, K, 64, 64}, 6));
  auto ch = [](const Tensor& t, int n) { return t.view().slice0(0, n); };
  ops::ConvFusionRef f;
  if (which == 1) f.in_bn = {ch(g, C), ch(g, C), ch(g, C), ch(v, C), 1e-5f};
  if (which != 3) {
    f.out_bn = {ch(g, K), ch(g, K), ch(g, K), ch(v, K), 1e-5f};
    f.out_relu = true;
  } else {
    f.residual = r;
  }
  const Conv2dShape cs = ops::conv2d_shape(x, w, p);
  const double bytes = double(dtype_size(act)) * double(x.numel() + y.numel() * (which == 3 ? 2 : 1)) +
                       4.0 * double(w.numel());
  time_cuda(state, ctx, double(cs.flops()), bytes,
            [&] { ops::conv2d_fused_forward(x, w, b, y, p, f); });
  ops::set_cuda_stream(nullptr);
}

void BM_cuda_fused_bottleneck_conv(benchmark::State& state) {
  if (!have_device(state)) return;
  using M = ck::MathMode;
  const KernelChoice maths[] = {{M::F32},        {M::TF32},             {M::FP16},
                                {M::TF32, true}, {M::TF32, true, true}, {M::FP16, true}};
  const ScopedKernelChoice choice(maths[state.range(2)]);
  time_bottleneck_conv(state, int(state.range(0)), int(state.range(1)), DType::F32);
}
BENCHMARK(BM_cuda_fused_bottleneck_conv)
    ->ArgNames({"N", "conv", "math"})
    ->ArgsProduct({{1, 64}, {1, 2, 3}, {0, 1, 2, 3, 4, 5}})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);

// The same three bottleneck convs on 16-bit activation tensors (act 1: F16,
// 2: BF16; x, y and the residual in that type, HourglassNet's
// --activations): half the activation bytes of BM_cuda_fused_bottleneck_conv
// math:2 (FP16 math on float32 tensors), the row to compare with.
void BM_cuda_fused_bottleneck_conv16(benchmark::State& state) {
  if (!have_device(state)) return;
  time_bottleneck_conv(state, int(state.range(0)), int(state.range(1)),
                       state.range(2) == 1 ? DType::F16 : DType::BF16);
}
BENCHMARK(BM_cuda_fused_bottleneck_conv16)
    ->ArgNames({"N", "conv", "act"})
    ->ArgsProduct({{1, 64}, {1, 2, 3}, {1, 2}})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);

// The persistent batch-1 lifter: kernel time only (CUDA events around the one
// launch; no host normalisation, no copies). args: kind (0 martinez,
// 1 progressive), width, launch (0 cooperative grid, 1 one cluster, sm_90,
// 2 prefetching grid).
void BM_cuda_persistent_lifter(benchmark::State& state) {
  if (!have_device(state)) return;
  if (state.range(2) == 1 && !ck::mlp_cluster_supported()) {
    state.SkipWithError("cluster launch needs sm_90");
    return;
  }
  const ck::MlpLaunch launches[] = {ck::MlpLaunch::Cooperative, ck::MlpLaunch::Cluster,
                                    ck::MlpLaunch::Prefetch};
  ck::set_mlp_launch(launches[state.range(2)]);
  nn::LifterConfig c;
  c.kind = state.range(0) ? "progressive" : "martinez";
  c.width = int(state.range(1));
  c.use_attributes = state.range(0) != 0;
  auto l = nn::Lifter::create(c, 1);
  l->to_device(Device::CUDA);
  Context ctx(Device::CUDA);
  ctx.make_current();
  nn::PersistentLifter plan(*l);
  Tensor x = device_randn({1, c.input_dim()}, 7);
  std::vector<Tensor> poses;
  std::vector<TensorView> views;
  for (int b = 0; b < l->num_blocks(); ++b) {
    poses.push_back(Tensor::empty({1, 51}, DType::F32, Device::CUDA));
    views.push_back(poses.back().view());
  }
  const double flops = double(l->flops_per_pose());
  double weight_bytes = 0;
  for (const nn::Param& prm : l->parameters()) weight_bytes += 4.0 * double(prm.value->numel());
  time_cuda(state, ctx, flops, weight_bytes, [&] { plan.run(x, views); });
  state.counters["phases"] = plan.phases();
  ck::set_mlp_launch(ck::MlpLaunch::Cooperative);
  ops::set_cuda_stream(nullptr);
}
BENCHMARK(BM_cuda_persistent_lifter)
    ->ArgNames({"progressive", "width", "launch"})
    ->ArgsProduct({{0, 1}, {256, 512, 1024}, {0, 1, 2}})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_cuda_conv2d_backward(benchmark::State& state) {
  if (!have_device(state)) return;
  const int N = int(state.range(0)), C = int(state.range(1)), H = int(state.range(2));
  const int K = int(state.range(3)), R = int(state.range(4));
  ck::set_math_mode(state.range(5) ? ck::MathMode::TF32 : ck::MathMode::F32);
  Context ctx(Device::CUDA);
  ctx.make_current();
  ops::ConvParams p{1, R / 2, 1};
  Tensor x = device_randn({N, C, H, H}, 1), w = device_randn({K, C, R, R}, 2);
  Tensor dy = device_randn({N, K, H, H}, 3);
  Tensor dx = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
  Tensor dw = Tensor::empty(w.shape(), DType::F32, Device::CUDA);
  Tensor db = Tensor::empty({K}, DType::F32, Device::CUDA);
  const Conv2dShape cs = ops::conv2d_shape(x, w, p);
  const double bytes = 4.0 * double(2 * x.numel() + 2 * w.numel() + dy.numel());
  time_cuda(state, ctx, 2.0 * double(cs.flops()), bytes,
            [&] { ops::conv2d_backward(x, w, dy, dx, dw, db, p); });
  ck::set_math_mode(ck::MathMode::F32);
  ops::set_cuda_stream(nullptr);
}
BENCHMARK(BM_cuda_conv2d_backward)
    ->ArgNames({"N", "C", "H", "K", "R", "tf32"})
    ->Args({16, 128, 64, 128, 3, 0})->Args({16, 128, 64, 128, 3, 1})
    ->Args({16, 256, 64, 128, 1, 0})->Args({16, 256, 64, 128, 1, 1})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);

// args: M, N, K, backend (0 own, 1 cuBLAS), tf32
void BM_cuda_gemm(benchmark::State& state) {
  if (!have_device(state)) return;
  const int M = int(state.range(0)), N = int(state.range(1)), K = int(state.range(2));
  ck::set_gemm_backend(state.range(3) ? ck::GemmBackend::Cublas : ck::GemmBackend::Own);
  ck::set_math_mode(state.range(4) ? ck::MathMode::TF32 : ck::MathMode::F32);
  Context ctx(Device::CUDA);
  ctx.make_current();
  Tensor a = device_randn({M, K}, 1), b = device_randn({K, N}, 2);
  Tensor c = Tensor::empty({M, N}, DType::F32, Device::CUDA);
  time_cuda(state, ctx, 2.0 * M * N * K, 4.0 * (double(M) * K + double(K) * N + double(M) * N), [&] {
    ck::gemm(false, false, M, N, K, 1.f, a.f32(), K, b.f32(), N, 0.f, c.f32(), N, ctx.stream());
  });
  ck::set_gemm_backend(ck::GemmBackend::Own);
  ck::set_math_mode(ck::MathMode::F32);
  ops::set_cuda_stream(nullptr);
}
BENCHMARK(BM_cuda_gemm)
    ->ArgNames({"M", "N", "K", "cublas", "tf32"})
    ->ArgsProduct({{4096}, {1024}, {1024}, {0, 1}, {0, 1}})
    ->ArgsProduct({{1}, {1024}, {1024}, {0, 1}, {0}})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_cuda_batchnorm_train(benchmark::State& state) {
  if (!have_device(state)) return;
  const int N = int(state.range(0)), C = int(state.range(1)), H = int(state.range(2));
  Context ctx(Device::CUDA);
  ctx.make_current();
  const Shape s = H > 0 ? Shape{N, C, H, H} : Shape{N, C};
  Tensor x = device_randn(s, 1), y = Tensor::empty(s, DType::F32, Device::CUDA);
  Tensor g = device_randn({C}, 2), b = device_randn({C}, 3);
  Tensor m = Tensor::empty({C}, DType::F32, Device::CUDA), v = Tensor::empty({C}, DType::F32, Device::CUDA);
  time_cuda(state, ctx, 0, 4.0 * 3 * double(x.numel()),
            [&] { ops::batchnorm_forward_train(x, g, b, {}, {}, y, m, v); });
  ops::set_cuda_stream(nullptr);
}
BENCHMARK(BM_cuda_batchnorm_train)
    ->ArgNames({"N", "C", "H"})
    ->Args({16, 256, 64})->Args({4096, 1024, 0})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);

// BatchNorm (training) -> ReLU -> Dropout, forward and backward: the fused op
// (fused = 1: two launches) against the separate ops (six launches, the BN
// and ReLU outputs stored). Args: N, C, H (0: [N, C]), p x 10, fused.
void BM_cuda_bn_relu_dropout_train(benchmark::State& state) {
  if (!have_device(state)) return;
  const int N = int(state.range(0)), C = int(state.range(1)), H = int(state.range(2));
  const float p = float(state.range(3)) / 10.f;
  const bool fused = state.range(4) != 0;
  Context ctx(Device::CUDA);
  ctx.make_current();
  const Shape s = H > 0 ? Shape{N, C, H, H} : Shape{N, C};
  auto dev = [&](DType t = DType::F32) { return Tensor::empty(s, t, Device::CUDA); };
  Tensor x = device_randn(s, 1), dy = device_randn(s, 4), y = dev(), dx = dev();
  Tensor z = dev(), r = dev(), gr = dev(), gz = dev(), mask = dev(DType::U8);
  Tensor g = device_randn({C}, 2), b = device_randn({C}, 3);
  auto vec = [&] { return Tensor::empty({C}, DType::F32, Device::CUDA); };
  Tensor m = vec(), v = vec(), dg = vec(), db = vec();
  // Bytes the fused pair moves: x twice and y, mask once (forward); x, dy,
  // mask twice and dx (backward).
  const double n = double(x.numel());
  time_cuda(state, ctx, 0, n * (4 * 3 + 1 + 4 * 5 + 2), [&] {
    if (fused) {
      ops::batchnorm_relu_dropout_forward_train(x, g, b, {}, {}, y, m, v, mask, p, 7);
      ops::batchnorm_relu_dropout_backward_train(x, g, m, v, mask, p, dy, dx, dg, db);
      return;
    }
    ops::batchnorm_forward_train(x, g, b, {}, {}, z, m, v);
    ops::relu_forward(z, r);
    if (p > 0.f) ops::dropout_forward(r, y, mask, p, 7);
    if (p > 0.f) ops::dropout_backward(mask, dy, gr, p);
    ops::relu_backward(z, p > 0.f ? gr : dy, gz);
    ops::batchnorm_backward_train(x, g, m, v, gz, dx, dg, db);
  });
  state.SetLabel(fused ? "fused" : "separate");
  ops::set_cuda_stream(nullptr);
}
BENCHMARK(BM_cuda_bn_relu_dropout_train)
    ->ArgNames({"N", "C", "H", "p10", "fused"})
    ->ArgsProduct({{64}, {1024}, {0}, {5}, {0, 1}})     // a lifter layer, batch 64
    ->ArgsProduct({{4096}, {1024}, {0}, {5}, {0, 1}})   // batch 4096
    ->ArgsProduct({{8}, {256}, {64}, {0}, {0, 1}})      // a bottleneck's BN -> ReLU, batch 8
    ->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_cuda_softargmax(benchmark::State& state) {
  if (!have_device(state)) return;
  const int N = int(state.range(0));
  Context ctx(Device::CUDA);
  ctx.make_current();
  Tensor h = device_randn({N, 16, 64, 64}, 1), p = Tensor::empty(h.shape(), DType::F32, Device::CUDA);
  Tensor c = Tensor::empty({N, 16, 2}, DType::F32, Device::CUDA);
  time_cuda(state, ctx, 0, 4.0 * 2 * double(h.numel()), [&] { ops::softargmax_forward(h, p, c, 1.f); });
  ops::set_cuda_stream(nullptr);
}
BENCHMARK(BM_cuda_softargmax)->Arg(1)->Arg(64)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_cuda_maxpool_upsample_add(benchmark::State& state) {
  if (!have_device(state)) return;
  const int N = int(state.range(0));
  Context ctx(Device::CUDA);
  ctx.make_current();
  Tensor x = device_randn({N, 256, 64, 64}, 1);
  Tensor pooled = Tensor::empty({N, 256, 32, 32}, DType::F32, Device::CUDA);
  Tensor y = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
  time_cuda(state, ctx, 0, 4.0 * (2.5 * double(x.numel()) + 0.5 * double(x.numel())), [&] {
    ops::maxpool2x2_forward(x, pooled);
    ops::upsample_add_forward(x, pooled, y);
  });
  ops::set_cuda_stream(nullptr);
}
BENCHMARK(BM_cuda_maxpool_upsample_add)->Arg(1)->Arg(16)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace
#endif  // DOFPOSE_WITH_CUDA
