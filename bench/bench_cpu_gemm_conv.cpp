// CPU GEMM and convolution throughput. Counters report GFLOP/s
// (2 flops per multiply-add) so results compare directly across sizes.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"

namespace {

using dofpose::Conv2dShape;
namespace cpu = dofpose::cpu;

std::vector<float> random_vec(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void set_gflops(benchmark::State& state, double flops_per_iter) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops_per_iter * 1e-9 * state.iterations(),
                                                 benchmark::Counter::kIsRate);
}

// Square C = A * B, optionally with transposed operands (arg 1: 0 NN, 1 TN, 2 NT).
void BM_gemm(benchmark::State& state) {
  const int n = (int)state.range(0);
  const int mode = (int)state.range(1);
  const bool ta = mode == 1, tb = mode == 2;
  const auto A = random_vec((size_t)n * n, 1), B = random_vec((size_t)n * n, 2);
  std::vector<float> C((size_t)n * n);
  for (auto _ : state) {
    cpu::gemm(ta, tb, n, n, n, 1.0f, A.data(), n, B.data(), n, 0.0f, C.data(), n);
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, 2.0 * n * n * n);
}
BENCHMARK(BM_gemm)
    ->ArgNames({"n", "trans"})
    ->Args({256, 0})
    ->Args({512, 0})
    ->Args({768, 0})
    ->Args({1024, 0})
    ->Args({1024, 1})
    ->Args({1024, 2})
    ->UseRealTime()->Unit(benchmark::kMillisecond);

// The rectangular GEMMs of an hourglass training step (batch 4, one im2col
// band of 32 rows x 64): M x N x K with A / B transposed as conv2d calls them.
void BM_gemm_model_shapes(benchmark::State& state) {
  const int M = (int)state.range(0), N = (int)state.range(1), K = (int)state.range(2);
  const bool ta = state.range(3) != 0, tb = state.range(4) != 0;
  const auto A = random_vec((size_t)M * K, 1), B = random_vec((size_t)K * N, 2);
  std::vector<float> C((size_t)M * N);
  for (auto _ : state) {
    cpu::gemm(ta, tb, M, N, K, 1.0f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.0f, C.data(), N);
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, 2.0 * M * N * K);
}
BENCHMARK(BM_gemm_model_shapes)
    ->ArgNames({"M", "N", "K", "ta", "tb"})
    ->Args({128, 2048, 1152, 0, 0})  // 3x3 conv forward: y = W * col
    ->Args({1152, 2048, 128, 1, 0})  // 3x3 conv data grad: dcol = W^T * dy
    ->Args({128, 1152, 2048, 0, 1})  // 3x3 conv weight grad: dW = dy * col^T
    ->Args({256, 4096, 128, 0, 0})   // 1x1 expand forward
    ->Args({256, 128, 4096, 0, 1})   // 1x1 expand weight grad
    ->Args({128, 64, 16384, 0, 1})   // 1x1 weight grad at 128x128 (long K, narrow N)
    ->Args({64, 147, 16384, 0, 1})   // 7x7 stem weight grad
    ->Args({4096, 1024, 1024, 0, 1}) // lifter linear, batch 4096: y = x * W^T
    ->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_gemm_naive(benchmark::State& state) {
  const int n = (int)state.range(0);
  const auto A = random_vec((size_t)n * n, 1), B = random_vec((size_t)n * n, 2);
  std::vector<float> C((size_t)n * n);
  for (auto _ : state) {
    cpu::gemm_naive(false, false, n, n, n, 1.0f, A.data(), n, B.data(), n, 0.0f, C.data(), n);
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, 2.0 * n * n * n);
}
BENCHMARK(BM_gemm_naive)->ArgName("n")->Arg(256)->UseRealTime()->Unit(benchmark::kMillisecond);

Conv2dShape conv_shape(int N, int C, int H, int K, int R, int stride, int pad, int groups) {
  Conv2dShape s;
  s.N = N, s.C = C, s.H = H, s.W = H, s.K = K, s.R = R, s.S = R;
  s.stride = stride, s.pad = pad, s.groups = groups;
  return s;
}

// Hourglass-style layers; args: N, C, H(=W), K, R(=S), stride, pad, groups.
void conv_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"N", "C", "H", "K", "R", "stride", "pad", "groups"});
  b->Args({1, 128, 64, 128, 3, 1, 1, 1});   // residual 3x3 at 64x64
  b->Args({1, 256, 64, 128, 1, 1, 0, 1});   // bottleneck 1x1 reduce
  b->Args({1, 128, 64, 256, 1, 1, 0, 1});   // bottleneck 1x1 expand
  b->Args({1, 3, 256, 64, 7, 2, 3, 1});     // 7x7/2 stem
  b->Args({1, 128, 32, 128, 3, 1, 1, 1});   // 3x3 at 32x32
  b->Args({1, 128, 16, 128, 3, 1, 1, 1});   // 3x3 deep in the hourglass
  b->Args({1, 64, 128, 64, 3, 1, 1, 1});    // layer1's 3x3 at 128x128
  b->Args({4, 128, 64, 128, 3, 1, 1, 1});   // batch 4
  b->Args({1, 128, 64, 128, 3, 1, 1, 128}); // depthwise 3x3
}

void BM_conv2d_forward(benchmark::State& state) {
  const Conv2dShape s = conv_shape((int)state.range(0), (int)state.range(1), (int)state.range(2),
                                   (int)state.range(3), (int)state.range(4), (int)state.range(5),
                                   (int)state.range(6), (int)state.range(7));
  const auto x = random_vec((size_t)s.N * s.C * s.H * s.W, 1);
  const auto w = random_vec((size_t)s.K * (s.C / s.groups) * s.R * s.S, 2);
  const auto b = random_vec((size_t)s.K, 3);
  std::vector<float> y((size_t)s.N * s.K * s.P() * s.Q());
  for (auto _ : state) {
    cpu::conv2d_forward(s, x.data(), w.data(), b.data(), y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, (double)s.flops());
}
BENCHMARK(BM_conv2d_forward)->Apply(conv_args)->UseRealTime()->Unit(benchmark::kMillisecond);

// The same 3x3 layers by Winograd F(4x4, 3x3) (what the fused inference runs
// where conv2d_winograd_worthwhile holds; 16x16 at batch 1 is below its
// threshold and shown for the comparison). GFLOP/s count the direct
// convolution's flops, so they compare with BM_conv2d_forward's row for row.
void BM_conv2d_winograd_forward(benchmark::State& state) {
  const Conv2dShape s = conv_shape((int)state.range(0), (int)state.range(1), (int)state.range(2),
                                   (int)state.range(3), 3, 1, 1, 1);
  const auto x = random_vec((size_t)s.N * s.C * s.H * s.W, 1);
  const auto w = random_vec((size_t)s.K * s.C * 9, 2);
  const auto b = random_vec((size_t)s.K, 3);
  std::vector<float> y((size_t)s.N * s.K * s.P() * s.Q());
  for (auto _ : state) {
    cpu::conv2d_winograd_forward(s, x.data(), w.data(), b.data(), y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, (double)s.flops());
}
BENCHMARK(BM_conv2d_winograd_forward)
    ->ArgNames({"N", "C", "H", "K"})
    ->Args({1, 64, 128, 64})    // layer1's 3x3 at 128x128
    ->Args({1, 128, 64, 128})   // residual 3x3 at 64x64
    ->Args({1, 128, 32, 128})   // 32x32: 64 tiles, the threshold
    ->Args({1, 128, 16, 128})   // 16x16: below it (the direct product runs)
    ->Args({4, 128, 64, 128})   // batch 4
    ->UseRealTime()->Unit(benchmark::kMillisecond);

// dx + dw + dbias: twice the forward flops.
void BM_conv2d_backward(benchmark::State& state) {
  const Conv2dShape s = conv_shape((int)state.range(0), (int)state.range(1), (int)state.range(2),
                                   (int)state.range(3), (int)state.range(4), (int)state.range(5),
                                   (int)state.range(6), (int)state.range(7));
  const auto x = random_vec((size_t)s.N * s.C * s.H * s.W, 1);
  const auto w = random_vec((size_t)s.K * (s.C / s.groups) * s.R * s.S, 2);
  const auto dy = random_vec((size_t)s.N * s.K * s.P() * s.Q(), 3);
  std::vector<float> dx(x.size()), dw(w.size()), db((size_t)s.K);
  for (auto _ : state) {
    cpu::conv2d_backward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, 2.0 * (double)s.flops());
}
BENCHMARK(BM_conv2d_backward)
    ->ArgNames({"N", "C", "H", "K", "R", "stride", "pad", "groups"})
    ->Args({1, 128, 64, 128, 3, 1, 1, 1})
    ->Args({1, 256, 64, 128, 1, 1, 0, 1})
    ->Args({1, 3, 256, 64, 7, 2, 3, 1})
    ->UseRealTime()->Unit(benchmark::kMillisecond);

// The 3x3 weight gradient alone (args N, C, H, K; dx not requested): the
// direct product (im2col bands and one GEMM, what training runs) against
// Winograd F(3x3, 4x4) (cpu::conv2d_winograd_backward_weights). GFLOP/s count
// the direct product's flops, so the rows compare directly.
void BM_conv2d_backward_weights(benchmark::State& state) {
  const bool winograd = state.range(4) != 0;
  const Conv2dShape s = conv_shape((int)state.range(0), (int)state.range(1), (int)state.range(2),
                                   (int)state.range(3), 3, 1, 1, 1);
  const auto x = random_vec((size_t)s.N * s.C * s.H * s.W, 1);
  const auto dy = random_vec((size_t)s.N * s.K * s.P() * s.Q(), 3);
  std::vector<float> dw((size_t)s.K * s.C * 9);
  for (auto _ : state) {
    if (winograd)
      cpu::conv2d_winograd_backward_weights(s, x.data(), dy.data(), dw.data());
    else
      cpu::conv2d_backward(s, x.data(), nullptr, dy.data(), nullptr, dw.data(), nullptr);
    benchmark::DoNotOptimize(dw.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, (double)s.flops());
}
BENCHMARK(BM_conv2d_backward_weights)
    ->ArgNames({"N", "C", "H", "K", "winograd"})
    ->Args({4, 128, 64, 128, 0})
    ->Args({4, 128, 64, 128, 1})
    ->Args({4, 128, 32, 128, 0})
    ->Args({4, 128, 32, 128, 1})
    ->Args({4, 64, 128, 64, 0})
    ->Args({4, 64, 128, 64, 1})
    ->Args({4, 128, 16, 128, 0})  // 64 tiles: the threshold
    ->Args({4, 128, 16, 128, 1})
    ->UseRealTime()->Unit(benchmark::kMillisecond);

// Lifter-style fully connected layer: batch 64, 1024 -> 1024.
void BM_linear_forward(benchmark::State& state) {
  const int N = (int)state.range(0), in = 1024, out = 1024;
  const auto x = random_vec((size_t)N * in, 1), w = random_vec((size_t)out * in, 2);
  const auto b = random_vec((size_t)out, 3);
  std::vector<float> y((size_t)N * out);
  for (auto _ : state) {
    cpu::linear_forward(N, in, out, x.data(), w.data(), b.data(), y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, 2.0 * N * in * out);
}
BENCHMARK(BM_linear_forward)->ArgName("N")->Arg(1)->Arg(64)->UseRealTime()->Unit(benchmark::kMicrosecond);

// The lifter's training activation, BatchNorm1d -> ReLU -> Dropout(0.5) over
// a [N, C] batch (args N, C), and plain dropout over the same count:
// items_per_second = elements per second (the mask loop's hash used to
// dominate; docs/cpu-kernels.md).
void BM_bn_relu_dropout_train(benchmark::State& state) {
  const dofpose::BatchNormShape s{(int)state.range(0), (int)state.range(1), 1};
  const size_t n = (size_t)s.N * s.C;
  const auto x = random_vec(n, 1), gamma = random_vec((size_t)s.C, 2),
             beta = random_vec((size_t)s.C, 3);
  std::vector<float> rmean(s.C, 0.f), rvar(s.C, 1.f), y(n), smean(s.C), sinv(s.C);
  std::vector<uint8_t> mask(n);
  uint64_t seed = 0;
  for (auto _ : state) {
    cpu::batchnorm_relu_dropout_forward_train(s, x.data(), gamma.data(), beta.data(),
                                              rmean.data(), rvar.data(), 0.1f, 1e-5f, 0.5f,
                                              ++seed, y.data(), smean.data(), sinv.data(),
                                              mask.data(), nullptr);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed((int64_t)n * state.iterations());  // elements per second
}
BENCHMARK(BM_bn_relu_dropout_train)
    ->ArgNames({"N", "C"})->Args({256, 256})->Args({64, 1024})
    ->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_dropout_forward(benchmark::State& state) {
  const size_t n = (size_t)state.range(0);
  const auto x = random_vec(n, 1);
  std::vector<float> y(n);
  std::vector<uint8_t> mask(n);
  uint64_t seed = 0;
  for (auto _ : state) {
    cpu::dropout_forward((int64_t)n, 0.5f, ++seed, x.data(), y.data(), mask.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed((int64_t)n * state.iterations());  // elements per second
}
BENCHMARK(BM_dropout_forward)->ArgName("n")->Arg(65536)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
