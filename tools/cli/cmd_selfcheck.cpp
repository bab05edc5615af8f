// dofpose selfcheck: a pre-activation bottleneck block (the hourglass's unit)
// run forward and backward through the op API, its gradients checked against
// central finite differences, and its speed measured. A one-command proof that
// this build computes correctly on this machine.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "dofpose/build_info.h"
#include "dofpose/ops.h"
#include "tools/cli/commands.h"

namespace dofpose_cli {
namespace {

using dofpose::Shape;
using dofpose::Tensor;
using dofpose::TensorView;
namespace ops = dofpose::ops;

struct BnParams {
  Tensor gamma, beta, mean, invstd;
};

// y = conv3(relu(bn3(conv2(relu(bn2(conv1(relu(bn1(x)))))))) + skip(x), BN in training mode.
struct Block {
  int cin, mid, cout;
  Tensor w1, b1, w2, b2, w3, b3, ws, bs;
  BnParams bn[3];
};

Tensor randn(Shape s, std::mt19937& rng, float scale) {
  Tensor t = Tensor::empty(s);
  std::normal_distribution<float> d(0.f, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = d(rng);
  return t;
}

Tensor like(const TensorView& t) { return Tensor::zeros(t.shape); }

struct Activations {
  Tensor a1, r1, c1, a2, r2, c2, a3, r3, c3, skip, y;
};

void bn_relu(const TensorView& x, BnParams& p, Tensor& a, Tensor& r) {
  a = like(x);
  r = like(x);
  ops::batchnorm_forward_train(x, p.gamma, p.beta, {}, {}, a, p.mean, p.invstd);
  ops::relu_forward(a, r);
}

Tensor conv(const TensorView& x, const Tensor& w, const Tensor& b, int pad) {
  Tensor y = Tensor::zeros(ops::conv2d_output_shape(x, w, {1, pad, 1}));
  ops::conv2d_forward(x, w, b, y, {1, pad, 1});
  return y;
}

Activations forward(Block& k, const TensorView& x) {
  Activations a;
  bn_relu(x, k.bn[0], a.a1, a.r1);
  a.c1 = conv(a.r1, k.w1, k.b1, 0);
  bn_relu(a.c1, k.bn[1], a.a2, a.r2);
  a.c2 = conv(a.r2, k.w2, k.b2, 1);
  bn_relu(a.c2, k.bn[2], a.a3, a.r3);
  a.c3 = conv(a.r3, k.w3, k.b3, 0);
  a.skip = conv(x, k.ws, k.bs, 0);
  a.y = like(a.c3);
  ops::add_forward(a.c3, a.skip, a.y);
  return a;
}

double loss_of(Block& k, const TensorView& x, const TensorView& v) {
  Activations a = forward(k, x);
  double s = 0;
  for (int64_t i = 0; i < v.numel(); ++i) s += double(v.f32()[i]) * a.y.f32()[i];
  return s;
}

// Backward of bn_relu + conv; returns the gradient with respect to `in`.
Tensor back_stage(const TensorView& in, BnParams& p, const Tensor& a, const Tensor& r,
                  const Tensor& w, const TensorView& dout, int pad, Tensor& dw) {
  Tensor dr = like(r), da = like(a), din = like(in);
  dw = like(w);
  ops::conv2d_backward(r, w, dout, dr, dw, {}, {1, pad, 1});
  ops::relu_backward(a, dr, da);
  ops::batchnorm_backward_train(in, p.gamma, p.mean, p.invstd, da, din, {}, {});
  return din;
}

}  // namespace

int cmd_selfcheck(int argc, char** argv) {
  if (wants_help(argc, argv)) {
    std::printf("usage: dofpose selfcheck\n\nRuns a pre-activation bottleneck block forward and "
                "backward through the op API,\nchecks its gradients against central finite "
                "differences and times a forward at\nhourglass scale. Exit status 3 when a "
                "gradient check fails.\n");
    return 0;
  }
  if (argc > 0) throw UsageError(std::string("unknown argument '") + argv[0] + "'");
  std::mt19937 rng(1234);
  Block k{8, 4, 16, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  k.w1 = randn({4, 8, 1, 1}, rng, 0.3f);  k.b1 = randn({4}, rng, 0.1f);
  k.w2 = randn({4, 4, 3, 3}, rng, 0.3f);  k.b2 = randn({4}, rng, 0.1f);
  k.w3 = randn({16, 4, 1, 1}, rng, 0.3f); k.b3 = randn({16}, rng, 0.1f);
  k.ws = randn({16, 8, 1, 1}, rng, 0.3f); k.bs = randn({16}, rng, 0.1f);
  int chans[3] = {8, 4, 4};
  for (int i = 0; i < 3; ++i) {
    k.bn[i].gamma = randn({chans[i]}, rng, 1.f);
    k.bn[i].beta = randn({chans[i]}, rng, 0.5f);
    k.bn[i].mean = Tensor::zeros({chans[i]});
    k.bn[i].invstd = Tensor::zeros({chans[i]});
  }
  Tensor x = randn({2, 8, 12, 12}, rng, 1.f);
  Tensor v = randn({2, 16, 12, 12}, rng, 1.f);

  // Analytic gradients by hand-chained backward ops.
  Activations a = forward(k, x);
  Tensor dw3, dw2, dw1, dws;
  Tensor d_r3 = like(a.r3), d_x_skip = like(x);
  Tensor dc2 = back_stage(a.c2, k.bn[2], a.a3, a.r3, k.w3, v, 0, dw3);
  Tensor dc1 = back_stage(a.c1, k.bn[1], a.a2, a.r2, k.w2, dc2, 1, dw2);
  Tensor dx = back_stage(x, k.bn[0], a.a1, a.r1, k.w1, dc1, 0, dw1);
  dws = like(k.ws);
  ops::conv2d_backward(x, k.ws, v, d_x_skip, dws, {}, {1, 0, 1});
  ops::accumulate(d_x_skip, dx);  // the input fans out to both branches

  struct Check {
    const char* name;
    Tensor* param;
    Tensor* grad;
  } checks[] = {{"x", &x, &dx}, {"conv1.weight", &k.w1, &dw1}, {"conv2.weight", &k.w2, &dw2},
                {"conv3.weight", &k.w3, &dw3}, {"skip.weight", &k.ws, &dws}};
  std::printf("dofpose selfcheck: pre-activation bottleneck 8->4->16, x [2,8,12,12], batch-stat BN\n");
  std::printf("  %-14s %10s %12s\n", "gradient", "checked", "max rel err");
  bool ok = true;
  for (auto& c : checks) {
    float* p = c.param->f32();
    double worst = 0;
    int n = 0;
    for (int64_t i = 0; i < c.param->numel(); i += 1 + c.param->numel() / 24, ++n) {
      const float h = 1e-3f, keep = p[i];
      p[i] = keep + h;
      double up = loss_of(k, x, v);
      p[i] = keep - h;
      double down = loss_of(k, x, v);
      p[i] = keep;
      double numeric = (up - down) / (2.0 * h), analytic = c.grad->f32()[i];
      double err = std::fabs(numeric - analytic) / std::max(1.0, std::fabs(numeric));
      worst = std::max(worst, err);
    }
    bool pass = worst < 2e-2;
    ok = ok && pass;
    std::printf("  %-14s %10d %12.2e %s\n", c.name, n, worst, pass ? "ok" : "FAILED");
  }

  // Speed of a forward pass of the block at hourglass scale (256 -> 128 -> 256, 64x64).
  Block big{256, 128, 256, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  big.w1 = randn({128, 256, 1, 1}, rng, 0.05f); big.b1 = randn({128}, rng, 0.1f);
  big.w2 = randn({128, 128, 3, 3}, rng, 0.05f); big.b2 = randn({128}, rng, 0.1f);
  big.w3 = randn({256, 128, 1, 1}, rng, 0.05f); big.b3 = randn({256}, rng, 0.1f);
  big.ws = randn({256, 256, 1, 1}, rng, 0.05f); big.bs = randn({256}, rng, 0.1f);
  int bchans[3] = {256, 128, 128};
  for (int i = 0; i < 3; ++i) {
    big.bn[i].gamma = randn({bchans[i]}, rng, 1.f);
    big.bn[i].beta = randn({bchans[i]}, rng, 0.5f);
    big.bn[i].mean = Tensor::zeros({bchans[i]});
    big.bn[i].invstd = Tensor::zeros({bchans[i]});
  }
  Tensor xb = randn({1, 256, 64, 64}, rng, 1.f);
  forward(big, xb);  // warm up
  auto t0 = std::chrono::steady_clock::now();
  const int reps = 5;
  for (int r = 0; r < reps; ++r) forward(big, xb);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
  double gflop = 2.0 * 64 * 64 * (256 * 128 + 128 * 128 * 9 + 128 * 256 + 256 * 256) * 1e-9;
  std::printf("  speed: bottleneck 256->128->256 at 64x64 (with 1x1 skip), batch 1: %.2f ms, %.1f GFLOP/s on %d thread(s)\n",
              ms, gflop / (ms * 1e-3), dofpose::cpu_threads());
  std::printf("selfcheck %s\n", ok ? "passed" : "FAILED");
  return ok ? 0 : 3;
}

DOFPOSE_COMMAND(selfcheck, "selfcheck",
                "run a bottleneck block forward and backward, check gradients numerically, time it", cmd_selfcheck);

}  // namespace dofpose_cli
