// Whole-model CPU throughput: the stacked hourglass forward and the lifters'
// inference and training step, with randomly initialised weights (speed does
// not depend on the values). Rate counters (printed as "poses=1.2k/s"):
// images or poses (inference) and samples (training), plus GFLOP of the
// forward where the model reports its FLOPs. PyTorch on the same weights:
// bench/compare_cpu.py; results: docs/performance.md.
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "dofpose/arena.h"
#include "dofpose/nn/hourglass.h"
#include "dofpose/nn/lifter.h"
#include "dofpose/nn/linear.h"
#include "dofpose/nn/model.h"
#include "dofpose/nn/optimizer.h"

namespace {

using namespace dofpose;

std::vector<float> random_vec(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void set_rate(benchmark::State& state, const char* name, double per_iter) {
  state.counters[name] = benchmark::Counter(per_iter * double(state.iterations()),
                                            benchmark::Counter::kIsRate);
}

const char* kLifterKinds[] = {"martinez", "progressive"};

nn::LifterConfig lifter_config(int kind_index) {
  nn::LifterConfig c;
  c.kind = kLifterKinds[kind_index];
  c.width = 1024;
  return c;
}

// Default HourglassConfig (2 stacks, 256 features, both heads), 256x256, batch 1.
void BM_hourglass_forward(benchmark::State& state) {
  const int batch = int(state.range(0));
  auto net = std::make_unique<nn::HourglassNet>(nn::HourglassConfig{}, 0);
  const int64_t flops = net->forward_flops(batch);
  const int s = net->config().input_size;
  std::unique_ptr<nn::Model> model = nn::make_model(std::move(net));
  std::vector<float> image = random_vec(size_t(batch) * 3 * s * s, 1);
  TensorView x(image.data(), {batch, 3, s, s});
  Arena arena;
  for (auto _ : state) {
    arena.reset();
    auto outs = model->forward(arena, {x, {}});
    benchmark::DoNotOptimize(outs.back().value.data);
  }
  set_rate(state, "images", batch);
  set_rate(state, "GFLOP", double(flops) * 1e-9);
}
BENCHMARK(BM_hourglass_forward)->ArgName("batch")->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);

// Lifter inference (BatchNorm running stats, no dropout) through Model::forward,
// i.e. with the input/output normalisation; args: kind (0 martinez, 1 progressive), batch.
void BM_lifter_infer(benchmark::State& state) {
  const int kind = int(state.range(0)), batch = int(state.range(1));
  std::unique_ptr<nn::Lifter> lifter = nn::Lifter::create(lifter_config(kind), 0);
  const int64_t flops = lifter->flops_per_pose() * batch;
  const int in = lifter->config().pose_input_dim();
  std::unique_ptr<nn::Model> model = nn::make_model(std::move(lifter));
  std::vector<float> pose2d = random_vec(size_t(batch) * in, 2);
  TensorView x(pose2d.data(), {batch, in});
  Arena arena;
  for (auto _ : state) {
    arena.reset();
    auto outs = model->forward(arena, {x, {}});
    benchmark::DoNotOptimize(outs.back().value.data);
  }
  state.SetLabel(kLifterKinds[kind]);
  set_rate(state, "poses", batch);
  set_rate(state, "GFLOP", double(flops) * 1e-9);
}
BENCHMARK(BM_lifter_infer)
    ->ArgNames({"kind", "batch"})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Args({0, 4096})
    ->Args({1, 4096})
    ->UseRealTime()->Unit(benchmark::kMillisecond);

// One training step as the trainer runs it (without data loading): forward in
// train mode (batch statistics, dropout), L1 loss over every block, backward,
// Adam, row max-norm. Args: kind, batch, unfused (1: BatchNorm, ReLU and
// Dropout as separate ops instead of the fused training activation).
void BM_lifter_train_step(benchmark::State& state) {
  const int kind = int(state.range(0)), batch = int(state.range(1));
  std::unique_ptr<nn::ScopedUnfused> unfused;
  if (state.range(2) != 0) unfused = std::make_unique<nn::ScopedUnfused>();
  std::unique_ptr<nn::Lifter> lifter = nn::Lifter::create(lifter_config(kind), 0);
  lifter->set_dropout_seed(0);
  nn::Adam adam(lifter->parameters());
  const auto& c = lifter->config();
  std::vector<float> xv = random_vec(size_t(batch) * c.input_dim(), 3);
  std::vector<float> yv = random_vec(size_t(batch) * c.output_dim(), 4);
  TensorView x(xv.data(), {batch, c.input_dim()}), y(yv.data(), {batch, c.output_dim()});
  Arena arena;
  for (auto _ : state) {
    arena.reset();
    nn::LifterOutput out = lifter->forward(arena, x, nn::Mode::Train);
    std::vector<TensorView> dposes;
    const float loss = nn::lifter_l1_loss(arena, out, y, dposes);
    benchmark::DoNotOptimize(loss);
    lifter->backward(arena, dposes);
    adam.step();
    if (c.max_norm > 0.f) nn::apply_max_norm(*lifter, c.max_norm);
  }
  state.SetLabel(std::string(kLifterKinds[kind]) + (unfused ? " unfused" : ""));
  set_rate(state, "samples", batch);
}
BENCHMARK(BM_lifter_train_step)
    ->ArgNames({"kind", "batch", "unfused"})
    ->ArgsProduct({{0, 1}, {64}, {0, 1}})
    ->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
