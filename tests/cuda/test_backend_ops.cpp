// Backend parity, in the spirit of ggml's test-backend-ops: every op of the
// op API, forward and backward, over a table of shapes (odd sizes, batch 1
// and many, the strides/paddings the models use), run once on CPU tensors
// (the reference) and once on CUDA copies of the same inputs. Outputs are
// poisoned (NaN) before each run on both sides, so an element a kernel
// forgets to write fails. Tolerances are relative to the largest reference
// element: kElementwise for ops without reductions, kReduction for sums over
// long axes in float32, kTf32 for the tensor-core paths.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "dofpose/context.h"
#include "dofpose/cuda_backend.h"
#include "dofpose/nn/graph_forward.h"
#include "dofpose/nn/hourglass.h"
#include "dofpose/nn/lifter.h"
#include "dofpose/nn/model.h"
#include "dofpose/nn/persistent_lifter.h"
#include "dofpose/nn/optimizer.h"
#include "dofpose/ops.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/cuda_kernels.h"

using namespace dofpose;
namespace ck = dofpose::cuda_kernels;

namespace {

constexpr double kElementwise = 1e-6;
constexpr double kReduction = 5e-5;
constexpr double kTf32 = 3e-3;
constexpr double kHalf = 2e-2;  // FP16 / BF16 inputs, FP32 accumulation

// Runs f when the scope ends (also when a check throws): restores a switch.
template <class F>
struct AtExit {
  F f;
  ~AtExit() { f(); }
};
template <class F>
AtExit(F) -> AtExit<F>;

Tensor randn(Shape s, uint32_t seed, float scale = 1.f, float offset = 0.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = offset + scale * d(rng);
  return t;
}

// Values on a coarse grid: max pooling then meets ties, which must resolve alike.
Tensor coarse(Shape s, uint32_t seed) {
  Tensor t = randn(s, seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = std::round(t.f32()[i] * 2.f) / 2.f;
  return t;
}

Tensor positive(Shape s, uint32_t seed) {
  Tensor t = randn(s, seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = 0.5f + std::fabs(t.f32()[i]);
  return t;
}

void poison(const Tensor& t) {
  if (t.device() == Device::CPU)
    std::memset(t.view().data, 0xFF, t.nbytes());
  else
    cuda::memset(t.view().data, 0xFF, t.nbytes(), ops::cuda_stream());
}

// Compares a CUDA result with the CPU reference; F32 within tol * max|ref|,
// other dtypes exactly. Reports the first mismatch with its index.
// Tolerance tol x the largest reference element (at least min_scale: where
// the result cancels, pass the size of its terms).
void expect_close(const std::string& what, const Tensor& ref, const Tensor& dev, double tol,
                  double min_scale = 1e-3) {
  Tensor got = dev.to(Device::CPU);
  REQUIRE(got.nbytes() == ref.nbytes());
  const bool is16 = ref.dtype() == DType::F16 || ref.dtype() == DType::BF16;
  if (is16 && tol > 0) {  // 16-bit activations: compared as float32 values
    Tensor r32 = Tensor::empty(ref.shape()), g32 = Tensor::empty(ref.shape());
    ops::cast(ref, r32);
    ops::cast(got, g32);
    expect_close(what, r32, g32, tol, min_scale);
    return;
  }
  bool finite = true;  // an exact comparison (tol 0) of infinities (casts) compares bits
  for (int64_t i = 0; ref.dtype() == DType::F32 && i < ref.numel(); ++i)
    finite = finite && std::isfinite(ref.f32()[i]);
  if (ref.dtype() != DType::F32 || (tol == 0 && !finite)) {
    const bool same = std::memcmp(got.view().data, ref.view().data, ref.nbytes()) == 0;
    if (!same) FAIL(what, ": ", dtype_name(ref.dtype()), " output differs from the CPU");
    return;
  }
  double scale = 1e-30;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const float r = ref.f32()[i];
    if (!std::isfinite(r)) FAIL(what, ": CPU reference element ", i, " is ", r);
    scale = std::max(scale, double(std::fabs(r)));
  }
  const double atol = tol * std::max(scale, min_scale);
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double g = got.f32()[i], r = ref.f32()[i];
    if (!(std::fabs(g - r) <= atol))
      FAIL(what, ": element ", i, " of ", ref.numel(), ": cuda ", g, " vs cpu ", r,
           " (tolerance ", atol, ")");
  }
}

// One op case: inputs, outputs (poisoned) and in-outs (start from given
// values), run through the same lambda on both backends.
class OpCase {
 public:
  explicit OpCase(std::string name) : name_(std::move(name)) {}
  int in(Tensor t) { return add(std::move(t), Kind::In); }
  int out(Shape s, DType t = DType::F32) { return add(Tensor::empty(s, t), Kind::Out); }
  int inout(Tensor init) { return add(std::move(init), Kind::InOut); }

  void run(const std::function<void(const std::vector<TensorView>&)>& op, double tol) {
    INFO(name_);
    std::vector<Tensor> cpu, dev;
    for (const Arg& a : args_) {
      Tensor c = Tensor::empty(a.value.shape(), a.value.dtype());
      std::memcpy(c.view().data, a.value.view().data, a.value.nbytes());
      if (a.kind == Kind::Out) poison(c);
      cpu.push_back(std::move(c));
    }
    Context ctx(Device::CUDA);
    ctx.make_current();
    // Even when the op throws: ctx's stream dies with ctx.
    AtExit reset{[] { ops::set_cuda_stream(nullptr); }};
    for (const Arg& a : args_) {
      Tensor d = a.value.to(Device::CUDA);
      if (a.kind == Kind::Out) poison(d);
      dev.push_back(std::move(d));
    }
    std::vector<TensorView> cv, dv;
    for (const Tensor& t : cpu) cv.push_back(t.view());
    for (const Tensor& t : dev) dv.push_back(t.view());
    op(cv);
    op(dv);
    ctx.synchronize();
    for (size_t i = 0; i < args_.size(); ++i)
      if (args_[i].kind != Kind::In)
        expect_close(name_ + " output " + std::to_string(i), cpu[i], dev[i], tol);
    ops::set_cuda_stream(nullptr);
  }

 private:
  enum class Kind { In, Out, InOut };
  struct Arg {
    Tensor value;
    Kind kind;
  };
  int add(Tensor t, Kind k) {
    args_.push_back({std::move(t), k});
    return int(args_.size()) - 1;
  }
  std::string name_;
  std::vector<Arg> args_;
};

std::string shape_name(const char* op, std::initializer_list<int> dims) {
  std::string s = op;
  s += "[";
  for (int d : dims) s += std::to_string(d) + ",";
  s.back() = ']';
  return s;
}

struct ConvCase {
  int N, C, H, W, K, R, S, stride, pad, groups;
};

// Shapes the models use (stem 7x7/2, 3x3/1, 1x1) and odd ones.
const ConvCase kConvCases[] = {
    {1, 3, 7, 9, 5, 3, 3, 1, 1, 1},     {2, 3, 7, 9, 5, 3, 3, 2, 0, 1},
    {2, 4, 8, 8, 6, 1, 1, 1, 0, 1},     {1, 3, 32, 32, 8, 7, 7, 2, 3, 1},
    {2, 8, 9, 7, 8, 3, 3, 1, 1, 8},     {2, 8, 10, 10, 4, 3, 3, 2, 2, 2},
    {3, 64, 16, 16, 128, 1, 1, 1, 0, 1}, {1, 128, 8, 8, 128, 3, 3, 1, 1, 1},
    {2, 5, 5, 5, 3, 5, 5, 1, 2, 1},     {2, 32, 16, 16, 16, 1, 1, 1, 0, 1},
    {1, 64, 33, 31, 32, 3, 3, 1, 1, 1},
    // A data grad on the tile path whose C is no multiple of the weight
    // transpose's 32 channels, and whose H*W takes the scalar stores.
    {2, 40, 9, 11, 24, 3, 3, 2, 1, 1},
};

struct MathModeGuard {
  explicit MathModeGuard(ck::MathMode m) { ck::set_math_mode(m); }
  ~MathModeGuard() { ck::set_math_mode(ck::MathMode::F32); }
};

void conv_cases(ck::MathMode mode, double tol) {
  MathModeGuard guard(mode);
  uint32_t seed = 100;
  for (const ConvCase& c : kConvCases) {
    for (bool with_bias : {true, false}) {
      ops::ConvParams p{c.stride, c.pad, c.groups};
      const std::string name =
          shape_name("conv2d", {c.N, c.C, c.H, c.W, c.K, c.R, c.S, c.stride, c.pad, c.groups}) +
          (with_bias ? "+bias" : "");
      Tensor x = randn({c.N, c.C, c.H, c.W}, ++seed);
      Tensor w = randn({c.K, c.C / c.groups, c.R, c.S}, ++seed, 0.3f);
      Tensor b = randn({c.K}, ++seed);
      const Shape ys = ops::conv2d_output_shape(x, w, p);
      {
        OpCase oc(name + " forward");
        int ix = oc.in(x.to(Device::CPU)), iw = oc.in(w.to(Device::CPU));
        int ib = oc.in(b.to(Device::CPU)), iy = oc.out(ys);
        oc.run([&](const std::vector<TensorView>& t) {
          ops::conv2d_forward(t[ix], t[iw], with_bias ? t[ib] : TensorView(), t[iy], p);
        }, tol);
      }
      {
        OpCase oc(name + " backward");
        int ix = oc.in(x.to(Device::CPU)), iw = oc.in(w.to(Device::CPU));
        int idy = oc.in(randn(ys, ++seed));
        int idx = oc.out(x.shape()), idw = oc.out(w.shape()), idb = oc.out({c.K});
        oc.run([&](const std::vector<TensorView>& t) {
          ops::conv2d_backward(t[ix], t[iw], t[idy], t[idx], t[idw],
                               with_bias ? t[idb] : TensorView(), p);
          if (!with_bias) fill(t[idb], 0.f);  // not computed: nothing to compare
        }, tol);
      }
    }
  }
}

// t's values stored as dtype (a cast; t itself for F32).
Tensor stored_as(Tensor t, DType dtype) {
  if (dtype == DType::F32) return t;
  Tensor out = Tensor::empty(t.shape(), dtype);
  ops::cast(t, out);
  return out;
}

// One fused-convolution case with the parts asked for; x stored as xt, y and
// the residual as yt (16-bit activations; F32 by default).
void fused_conv_case(const std::string& name, const ConvCase& c, uint32_t& seed, bool in_bn,
                     bool out_bn, bool relu, bool residual, double tol,
                     DType xt = DType::F32, DType yt = DType::F32) {
  ops::ConvParams p{c.stride, c.pad, 1};
  Tensor x = stored_as(randn({c.N, c.C, c.H, c.W}, ++seed), xt);
  Tensor w = randn({c.K, c.C, c.R, c.S}, ++seed, 0.3f);
  const Shape ys = ops::conv2d_output_shape(x, w, p);
  OpCase oc(name);
  int ix = oc.in(std::move(x)), iw = oc.in(std::move(w));
  int ib = oc.in(randn({c.K}, ++seed));
  int ig1 = oc.in(randn({c.C}, ++seed, 0.5f, 1.f)), ib1 = oc.in(randn({c.C}, ++seed));
  int im1 = oc.in(randn({c.C}, ++seed)), iv1 = oc.in(positive({c.C}, ++seed));
  int ig2 = oc.in(randn({c.K}, ++seed, 0.5f, 1.f)), ib2 = oc.in(randn({c.K}, ++seed));
  int im2 = oc.in(randn({c.K}, ++seed)), iv2 = oc.in(positive({c.K}, ++seed));
  int ir = oc.in(stored_as(randn(ys, ++seed), yt)), iy = oc.out(ys, yt);
  oc.run([&](const std::vector<TensorView>& t) {
    ops::ConvFusionRef f;
    if (in_bn) f.in_bn = {t[ig1], t[ib1], t[im1], t[iv1], 1e-5f};
    if (out_bn) f.out_bn = {t[ig2], t[ib2], t[im2], t[iv2], 1e-3f};
    f.out_relu = relu;
    if (residual) f.residual = t[ir];
    ops::conv2d_fused_forward(t[ix], t[iw], t[ib], t[iy], p, f);
  }, tol);
}

// The fused convolution over the groups == 1 shapes, every combination of
// prologue (in_bn + relu), out_bn, out_relu and residual.
void fused_conv_cases(ck::MathMode mode, double tol) {
  MathModeGuard guard(mode);
  uint32_t seed = 900;
  for (const ConvCase& c : kConvCases) {
    if (c.groups != 1) continue;
    for (int combo = 0; combo < 16; ++combo) {
      const bool in_bn = combo & 1, out_bn = combo & 2, relu = combo & 4, residual = combo & 8;
      if (combo % 3 != 0 && combo != 15) continue;  // a spread of the 16, all four together
      const std::string name =
          shape_name("conv2d_fused", {c.N, c.C, c.H, c.W, c.K, c.R, c.S, c.stride, c.pad}) +
          (in_bn ? "+in_bn" : "") + (out_bn ? "+out_bn" : "") + (relu ? "+relu" : "") +
          (residual ? "+residual" : "");
      fused_conv_case(name, c, seed, in_bn, out_bn, relu, residual, tol);
    }
  }
}

}  // namespace

#ifdef DOFPOSE_WITH_CUDNN
TEST_CASE("cuDNN (DOFPOSE_CUDNN build): its convolution agrees with the CPU, as ours does") {
  INFO("cuDNN " << ck::cudnn_version());
  uint32_t seed = 1300;
  for (const ConvCase& c : kConvCases) {
    ops::ConvParams p{c.stride, c.pad, c.groups};
    Tensor x = randn({c.N, c.C, c.H, c.W}, ++seed);
    Tensor w = randn({c.K, c.C / c.groups, c.R, c.S}, ++seed, 0.3f);
    Tensor b = randn({c.K}, ++seed);
    OpCase oc(shape_name("cudnn conv2d", {c.N, c.C, c.H, c.W, c.K, c.R, c.S, c.stride, c.pad, c.groups}));
    int ix = oc.in(x.to(Device::CPU)), iw = oc.in(w.to(Device::CPU)), ib = oc.in(b.to(Device::CPU));
    int iy = oc.out(ops::conv2d_output_shape(x, w, p));
    oc.run([&](const std::vector<TensorView>& t) {
      if (t[ix].device == Device::CPU)
        ops::conv2d_forward(t[ix], t[iw], t[ib], t[iy], p);
      else
        ck::cudnn_conv2d_forward(ops::conv2d_shape(t[ix], t[iw], p), t[ix].f32(), t[iw].f32(),
                                 t[ib].f32(), t[iy].f32(), ops::cuda_stream());
    }, kReduction);
  }
}
#endif

TEST_CASE("backend ops: fused conv2d (BN+ReLU prologue, BN/ReLU/residual epilogue)") {
  fused_conv_cases(ck::MathMode::F32, kReduction);
  fused_conv_cases(ck::MathMode::TF32, kTf32);
  fused_conv_cases(ck::MathMode::FP16, kHalf);
  fused_conv_cases(ck::MathMode::BF16, kHalf);
}

TEST_CASE("backend ops: gemm, every transpose combination, F32 / TF32, own / cuBLAS") {
  struct G {
    int M, N, K;
  };
  const G sizes[] = {{1, 1, 1}, {7, 5, 3}, {33, 65, 17}, {64, 64, 64}, {128, 96, 257}, {1, 1024, 34}, {256, 1, 4096}, {3, 27, 2048}, {64, 32, 1024}, {40, 70, 600}};  // the last four: skinny paths
  uint32_t seed = 1;
  for (ck::GemmBackend backend : {ck::GemmBackend::Own, ck::GemmBackend::Cublas})
    for (ck::MathMode mode : {ck::MathMode::F32, ck::MathMode::TF32, ck::MathMode::FP16,
                              ck::MathMode::BF16})
      for (const G& g : sizes)
        for (int ta = 0; ta < 2; ++ta)
          for (int tb = 0; tb < 2; ++tb)
            for (float beta : {0.f, 0.5f}) {
              ck::set_gemm_backend(backend);
              MathModeGuard guard(mode);
              const std::string name =
                  shape_name("gemm", {g.M, g.N, g.K, ta, tb}) + " beta " + std::to_string(beta) +
                  (backend == ck::GemmBackend::Own ? " own" : " cublas") +
                  (mode == ck::MathMode::F32    ? " f32"
                   : mode == ck::MathMode::TF32 ? " tf32"
                   : mode == ck::MathMode::FP16 ? " fp16"
                                                : " bf16");
              INFO(name);
              Tensor A = randn(ta ? Shape{g.K, g.M} : Shape{g.M, g.K}, ++seed);
              Tensor B = randn(tb ? Shape{g.N, g.K} : Shape{g.K, g.N}, ++seed);
              Tensor C = randn({g.M, g.N}, ++seed);
              const int lda = int(A.shape()[1]), ldb = int(B.shape()[1]);
              Tensor ref = Tensor::empty(C.shape());
              std::memcpy(ref.f32(), C.f32(), C.nbytes());
              cpu::gemm_naive(ta, tb, g.M, g.N, g.K, 1.25f, A.f32(), lda, B.f32(), ldb, beta,
                              ref.f32(), g.N);
              Tensor dA = A.to(Device::CUDA), dB = B.to(Device::CUDA), dC = C.to(Device::CUDA);
              if (beta == 0.f) poison(dC);  // beta 0 must not read C
              ck::gemm(ta, tb, g.M, g.N, g.K, 1.25f, dA.f32(), lda, dB.f32(), ldb, beta, dC.f32(),
                       g.N, nullptr);
              cuda::stream_synchronize(nullptr);
              // The terms' size, alpha |A||B| + |beta C|: a result that cancels
              // (1x1x1 with beta) keeps the rounding of its terms.
              auto abs_of = [](const Tensor& t) {
                Tensor r = Tensor::empty(t.shape());
                for (int64_t e = 0; e < t.numel(); ++e) r.f32()[e] = std::fabs(t.f32()[e]);
                return r;
              };
              Tensor absA = abs_of(A), absB = abs_of(B), terms = abs_of(C);
              cpu::gemm_naive(ta, tb, g.M, g.N, g.K, 1.25f, absA.f32(), lda, absB.f32(), ldb, beta,
                              terms.f32(), g.N);
              double term_scale = 0;
              for (int64_t e = 0; e < terms.numel(); ++e)
                term_scale = std::max(term_scale, double(terms.f32()[e]));
              expect_close(name, ref, dC,
                           mode == ck::MathMode::F32    ? kReduction
                           : mode == ck::MathMode::TF32 ? kTf32
                                                        : kHalf,
                           std::max(term_scale, 1e-3));
            }
  ck::set_gemm_backend(ck::GemmBackend::Own);
}

TEST_CASE("backend ops: conv2d forward and backward (F32)") { conv_cases(ck::MathMode::F32, kReduction); }

TEST_CASE("backend ops: 1x1 conv2d bias on every GEMM path (tile store, skinny, cuBLAS)") {
  // The 1x1 forward is a batched GEMM that adds the bias in its tile store;
  // the paths that cannot (cuBLAS, the skinny kernels) add it in a pass.
  struct Case {
    int N, C, H, W, K;
  };
  const Case cases[] = {{2, 64, 9, 7, 24},   // tiles, scalar stores (H*W = 63)
                        {3, 32, 8, 8, 40},   // tiles, float4 stores
                        {2, 600, 1, 1, 5}};  // skinny: 10 outputs, reduction 600
  uint32_t seed = 170;
  for (ck::GemmBackend backend : {ck::GemmBackend::Own, ck::GemmBackend::Cublas}) {
    for (const Case& c : cases) {
      const std::string name = std::string(backend == ck::GemmBackend::Own ? "own" : "cublas") +
                               " 1x1 conv " + Shape{c.N, c.C, c.H, c.W}.str() + " -> " +
                               std::to_string(c.K);
      const ops::ConvParams p{1, 0, 1};
      Tensor x = randn({c.N, c.C, c.H, c.W}, ++seed), w = randn({c.K, c.C, 1, 1}, ++seed, 0.3f);
      Tensor b = randn({c.K}, ++seed, 1.f, 5.f);  // far from 0: a missing bias shows
      OpCase oc(name);
      int ix = oc.in(std::move(x)), iw = oc.in(std::move(w)), ib = oc.in(std::move(b));
      int iy = oc.out({c.N, c.K, c.H, c.W});
      ck::set_gemm_backend(backend);
      oc.run([&](const std::vector<TensorView>& t) {
        ops::conv2d_forward(t[ix], t[iw], t[ib], t[iy], p);
      }, kReduction);
    }
  }
  ck::set_gemm_backend(ck::GemmBackend::Own);
}

TEST_CASE("backend ops: conv2d forward and backward (FP16 / BF16 tensor cores)") {
  conv_cases(ck::MathMode::FP16, kHalf);
  conv_cases(ck::MathMode::BF16, kHalf);
}

// TF32 runs wmma_async_tile_kernel, FP16 / BF16 mma_async_tile_kernel
// (hand-built mma.sync fragments): the same cp.async stages.
void multi_stage_cases(ck::MathMode mode, double tol) {
  AtExit reset{[] { ck::set_tile_pipeline(false); }};
  ck::set_tile_pipeline(true);
  // Below sm_80 the tensor-core kernels are not used: no launch to count.
  const bool tensor_cores = cuda::device_traits(0).cc_major >= 8;
  int64_t launches = ck::pipelined_launches();
  conv_cases(mode, tol);
  if (tensor_cores) CHECK_MESSAGE(ck::pipelined_launches() > launches, "no conv case reached the multi-stage kernel");
  launches = ck::pipelined_launches();
  // Input prologue (BN + ReLU) cases: without padding the mma.sync kernel
  // applies it as it reads B; with padding, and on the WMMA kernel, they fall back.
  fused_conv_cases(mode, tol);
  if (tensor_cores)
    CHECK_MESSAGE(ck::pipelined_launches() > launches, "no fused conv case reached the multi-stage kernel");
  MathModeGuard guard(mode);
  if (tensor_cores) {
    const bool mma = mode != ck::MathMode::TF32 || ck::tf32_mma();
    Tensor x = randn({2, 32, 16, 16}, 1999), w = randn({48, 32, 1, 1}, 1998), b = randn({48}, 1993);
    Tensor g = randn({32}, 1997, 0.5f, 1.f), be = randn({32}, 1996), mu = randn({32}, 1995), var = positive({32}, 1994);
    auto fused = [&](Device dev, const Tensor& y, std::vector<Tensor>& keep) {
      for (const Tensor* t : {&x, &w, &b, &g, &be, &mu, &var}) keep.push_back(t->to(dev));
      ops::ConvFusionRef f;
      f.in_bn = {keep[3].view(), keep[4].view(), keep[5].view(), keep[6].view(), 1e-5f};
      ops::conv2d_fused_forward(keep[0], keep[1], keep[2], y, ops::ConvParams{1, 0, 1}, f);
    };
    Tensor ref = Tensor::empty({2, 48, 16, 16}), y = Tensor::empty({2, 48, 16, 16}, DType::F32, Device::CUDA);
    std::vector<Tensor> keep_cpu, keep_gpu;
    fused(Device::CPU, ref, keep_cpu);
    const int64_t before = ck::pipelined_launches();
    fused(Device::CUDA, y, keep_gpu);
    cuda::stream_synchronize(nullptr);
    CHECK_MESSAGE(ck::pipelined_launches() - before == (mma ? 1 : 0),
                  "a 1x1 conv with an input prologue: multi-stage launches");
    expect_close("1x1 conv with the BN+ReLU prologue", ref, y, tol);
  }
  launches = ck::pipelined_launches();
  struct G {
    int M, N, K;
  };
  uint32_t seed = 2000;
  // The last two reach the 128x64 and 64x128 tiles on a 132-multiprocessor card.
  for (const G& g : {G{7, 5, 3}, G{33, 65, 17}, G{128, 96, 257}, G{200, 300, 129}, G{64, 64, 1},
                     G{1024, 2048, 64}, G{64, 17000, 32}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        INFO(shape_name("gemm pipelined", {g.M, g.N, g.K, ta, tb}) << " math " << int(mode));
        Tensor A = randn(ta ? Shape{g.K, g.M} : Shape{g.M, g.K}, ++seed);
        Tensor B = randn(tb ? Shape{g.N, g.K} : Shape{g.K, g.N}, ++seed);
        const int lda = int(A.shape()[1]), ldb = int(B.shape()[1]);
        Tensor ref = Tensor::zeros({g.M, g.N});
        cpu::gemm_naive(ta, tb, g.M, g.N, g.K, 1.0f, A.f32(), lda, B.f32(), ldb, 0.0f, ref.f32(), g.N);
        Tensor dA = A.to(Device::CUDA), dB = B.to(Device::CUDA);
        Tensor dC = Tensor::empty({g.M, g.N}, DType::F32, Device::CUDA);
        poison(dC);
        ck::gemm(ta, tb, g.M, g.N, g.K, 1.0f, dA.f32(), lda, dB.f32(), ldb, 0.0f, dC.f32(), g.N,
                 nullptr);
        cuda::stream_synchronize(nullptr);
        expect_close("gemm pipelined", ref, dC, tol);
      }
  if (tensor_cores) CHECK_MESSAGE(ck::pipelined_launches() > launches, "no gemm case reached the multi-stage kernel");
}

TEST_CASE("backend ops: the multi-stage TF32 kernel (set_tile_pipeline): conv2d, fused conv, gemm") {
  multi_stage_cases(ck::MathMode::TF32, kTf32);
}

TEST_CASE("backend ops: the multi-stage FP16 / BF16 mma.sync kernel (set_tile_pipeline): conv2d, fused conv, gemm") {
  multi_stage_cases(ck::MathMode::FP16, kHalf);
  multi_stage_cases(ck::MathMode::BF16, kHalf);
}

TEST_CASE("backend ops: the multi-stage TF32 mma.sync kernel (set_tile_pipeline + set_tf32_mma): conv2d, fused conv, gemm") {
  AtExit reset{[] { ck::set_tf32_mma(false); }};
  ck::set_tf32_mma(true);
  multi_stage_cases(ck::MathMode::TF32, kTf32);
}

TEST_CASE("backend ops: the stem's direct kernel (set_stem_path): conv2d and fused conv forward") {
  AtExit reset{[] { ck::set_stem_path(false); }};
  ck::set_stem_path(true);
  int applies = 0;  // the table must reach the kernel, not only the fallbacks
  for (const ConvCase& c : kConvCases) {
    Conv2dShape s;
    s.N = c.N, s.C = c.C, s.H = c.H, s.W = c.W, s.K = c.K, s.R = c.R, s.S = c.S;
    s.stride = c.stride, s.pad = c.pad, s.groups = c.groups;
    applies += ck::stem_forward_applies(s, ConvFusion{});
  }
  CHECK(applies >= 3);
  conv_cases(ck::MathMode::F32, kReduction);
  fused_conv_cases(ck::MathMode::F32, kReduction);  // prologue cases fall back
  // The hourglass stem itself (K = 64: four channel groups; 128x128 output)
  // and an odd one (K = 20: a partial channel group; partial pixel tiles),
  // with the inference epilogue (BN + ReLU).
  uint32_t seed = 3000;
  for (const ConvCase& c : {ConvCase{1, 3, 256, 256, 64, 7, 7, 2, 3, 1},
                            ConvCase{2, 3, 37, 29, 20, 7, 7, 2, 3, 1}}) {
    ops::ConvParams p{c.stride, c.pad, 1};
    Tensor x = randn({c.N, c.C, c.H, c.W}, ++seed);
    Tensor w = randn({c.K, c.C, c.R, c.S}, ++seed, 0.3f);
    const Shape ys = ops::conv2d_output_shape(x, w, p);
    OpCase oc(shape_name("stem conv+bn+relu", {c.N, c.C, c.H, c.W, c.K}));
    int ix = oc.in(x.to(Device::CPU)), iw = oc.in(w.to(Device::CPU)), ib = oc.in(randn({c.K}, ++seed));
    int ig = oc.in(randn({c.K}, ++seed, 0.5f, 1.f)), ibe = oc.in(randn({c.K}, ++seed));
    int im = oc.in(randn({c.K}, ++seed)), iv = oc.in(positive({c.K}, ++seed)), iy = oc.out(ys);
    oc.run([&](const std::vector<TensorView>& t) {
      ops::ConvFusionRef f;
      f.out_bn = {t[ig], t[ibe], t[im], t[iv], 1e-5f};
      f.out_relu = true;
      ops::conv2d_fused_forward(t[ix], t[iw], t[ib], t[iy], p, f);
    }, kReduction);
  }
}

TEST_CASE("backend ops: conv2d forward and backward (TF32 tensor cores)") {
  conv_cases(ck::MathMode::TF32, kTf32);
}

TEST_CASE("backend ops: linear forward and backward") {
  struct L {
    int N, in, out;
  };
  uint32_t seed = 300;
  for (ck::MathMode mode : {ck::MathMode::F32, ck::MathMode::TF32}) {
    MathModeGuard guard(mode);
    const double tol = mode == ck::MathMode::F32 ? kReduction : kTf32;
    for (const L& l : {L{1, 34, 1024}, L{7, 33, 17}, L{64, 1024, 1024}, L{3, 1, 5}, L{4096, 16, 48}})
      for (bool with_bias : {true, false}) {
        const std::string name = shape_name("linear", {l.N, l.in, l.out}) +
                                 (with_bias ? "+bias" : "") +
                                 (mode == ck::MathMode::F32 ? " f32" : " tf32");
        Tensor x = randn({l.N, l.in}, ++seed), w = randn({l.out, l.in}, ++seed, 0.1f);
        Tensor b = randn({l.out}, ++seed), dy = randn({l.N, l.out}, ++seed);
        OpCase f(name + " forward");
        int ix = f.in(x.to(Device::CPU)), iw = f.in(w.to(Device::CPU)), ib = f.in(b.to(Device::CPU));
        int iy = f.out({l.N, l.out});
        f.run([&](const std::vector<TensorView>& t) {
          ops::linear_forward(t[ix], t[iw], with_bias ? t[ib] : TensorView(), t[iy]);
        }, tol);
        OpCase bw(name + " backward");
        ix = bw.in(x.to(Device::CPU));
        iw = bw.in(w.to(Device::CPU));
        int idy = bw.in(dy.to(Device::CPU));
        int idx = bw.out(x.shape()), idw = bw.out(w.shape()), idb = bw.out({l.out});
        bw.run([&](const std::vector<TensorView>& t) {
          ops::linear_backward(t[ix], t[iw], t[idy], t[idx], t[idw], t[idb]);
        }, tol);
        if (with_bias) continue;
        // dx with a residual block's skip gradient added: in the tile store,
        // or in a pass after the skinny kernels and cuBLAS.
        Tensor dx_add = randn({l.N, l.in}, ++seed, 1.f, 3.f);
        for (ck::GemmBackend backend : {ck::GemmBackend::Own, ck::GemmBackend::Cublas}) {
          OpCase ba(name + (backend == ck::GemmBackend::Own ? " own" : " cublas") +
                    " backward + dx_add");
          ix = ba.in(x.to(Device::CPU));
          iw = ba.in(w.to(Device::CPU));
          idy = ba.in(dy.to(Device::CPU));
          const int iadd = ba.in(dx_add.to(Device::CPU));
          idx = ba.out(x.shape());
          ck::set_gemm_backend(backend);
          ba.run([&](const std::vector<TensorView>& t) {
            ops::linear_backward(t[ix], t[iw], t[idy], t[idx], {}, {}, t[iadd]);
          }, tol);
        }
        ck::set_gemm_backend(ck::GemmBackend::Own);
      }
  }
}

TEST_CASE("backend ops: batchnorm training statistics of channels far from zero") {
  // The CUDA kernels take both statistics from one read (sums shifted by one of
  // the channel's values); unshifted, E[x^2] - E[x]^2 would lose the variance
  // of a channel at 1e4 +- 0.01 (mean^2 / var = 1e12) even in double.
  uint32_t seed = 480;
  for (const Shape& s : std::vector<Shape>{{37, 13}, {2, 3, 5, 7}, {1, 4, 1, 3}, {8, 64, 16, 16}}) {
    const int64_t C = s[1];
    Tensor x = randn(s, ++seed, 0.01f, 1e4f);
    Tensor gamma = randn({C}, ++seed), beta = randn({C}, ++seed);
    OpCase oc("batchnorm far from zero" + s.str());
    int ix = oc.in(std::move(x)), ig = oc.in(std::move(gamma)), ib = oc.in(std::move(beta));
    int iy = oc.out(s), im = oc.out({C}), iv = oc.out({C});
    oc.run([&](const std::vector<TensorView>& t) {
      ops::batchnorm_forward_train(t[ix], t[ig], t[ib], {}, {}, t[iy], t[im], t[iv]);
    }, kReduction);
  }
}

TEST_CASE("backend ops: batchnorm train / inference, forward and backward, fold") {
  uint32_t seed = 400;
  const std::vector<Shape> shapes = {{4, 3}, {37, 13}, {64, 1024}, {4096, 16}, {2, 3, 5, 7}, {8, 64, 16, 16}, {1, 4, 1, 3}};
  for (const Shape& s : shapes) {
    const int64_t C = s[1];
    const std::string name = "batchnorm" + s.str();
    Tensor x = randn(s, ++seed, 2.f, 0.7f), dy = randn(s, ++seed);
    Tensor gamma = randn({C}, ++seed), beta = randn({C}, ++seed);
    Tensor rm = randn({C}, ++seed), rv = positive({C}, ++seed);
    {
      OpCase oc(name + " forward train");
      int ix = oc.in(x.to(Device::CPU)), ig = oc.in(gamma.to(Device::CPU)), ib = oc.in(beta.to(Device::CPU));
      int irm = oc.inout(rm.to(Device::CPU)), irv = oc.inout(rv.to(Device::CPU));
      int iy = oc.out(s), im = oc.out({C}), iv = oc.out({C});
      oc.run([&](const std::vector<TensorView>& t) {
        ops::batchnorm_forward_train(t[ix], t[ig], t[ib], t[irm], t[irv], t[iy], t[im], t[iv]);
      }, kReduction);
    }
    {
      OpCase oc(name + " forward infer");
      int ix = oc.in(x.to(Device::CPU)), ig = oc.in(gamma.to(Device::CPU)), ib = oc.in(beta.to(Device::CPU));
      int irm = oc.in(rm.to(Device::CPU)), irv = oc.in(rv.to(Device::CPU)), iy = oc.out(s);
      oc.run([&](const std::vector<TensorView>& t) {
        ops::batchnorm_forward_infer(t[ix], t[ig], t[ib], t[irm], t[irv], t[iy]);
      }, kElementwise * 10);
    }
    {
      // save_mean / save_invstd from a CPU forward, the same on both sides.
      Tensor y = Tensor::empty(s), sm = Tensor::empty({C}), si = Tensor::empty({C});
      ops::batchnorm_forward_train(x, gamma, beta, {}, {}, y, sm, si);
      OpCase oc(name + " backward train");
      int ix = oc.in(x.to(Device::CPU)), ig = oc.in(gamma.to(Device::CPU));
      int ism = oc.in(sm.to(Device::CPU)), isi = oc.in(si.to(Device::CPU)), idy = oc.in(dy.to(Device::CPU));
      int idx = oc.out(s), idg = oc.out({C}), idb = oc.out({C});
      oc.run([&](const std::vector<TensorView>& t) {
        ops::batchnorm_backward_train(t[ix], t[ig], t[ism], t[isi], t[idy], t[idx], t[idg], t[idb]);
      }, kReduction);
    }
    {
      OpCase oc(name + " backward infer");
      int ix = oc.in(x.to(Device::CPU)), ig = oc.in(gamma.to(Device::CPU));
      int irm = oc.in(rm.to(Device::CPU)), irv = oc.in(rv.to(Device::CPU)), idy = oc.in(dy.to(Device::CPU));
      int idx = oc.out(s), idg = oc.out({C}), idb = oc.out({C});
      oc.run([&](const std::vector<TensorView>& t) {
        ops::batchnorm_backward_infer(t[ix], t[ig], t[irm], t[irv], t[idy], t[idx], t[idg], t[idb]);
      }, kReduction);
    }
  }
  OpCase fold("batchnorm_fold[8,3,3,3]");
  int iw = fold.inout(randn({8, 3, 3, 3}, 1)), ib = fold.inout(randn({8}, 2));
  int ig = fold.in(randn({8}, 3)), ibe = fold.in(randn({8}, 4)), irm = fold.in(randn({8}, 5));
  int irv = fold.in(positive({8}, 6));
  fold.run([&](const std::vector<TensorView>& t) {
    ops::batchnorm_fold(t[iw], t[ib], t[ig], t[ibe], t[irm], t[irv]);
  }, kElementwise * 10);
}

TEST_CASE("backend ops: fused batchnorm -> relu -> dropout (training), forward and backward") {
  uint32_t seed = 450;
  const std::vector<Shape> shapes = {{4, 3}, {37, 13}, {64, 1024}, {4096, 16}, {2, 3, 5, 7}, {8, 64, 16, 16}};
  for (const Shape& s : shapes) {
    for (float p : {0.f, 0.5f}) {
      const int64_t C = s[1];
      const std::string name = "batchnorm_relu_dropout" + s.str() + " p " + std::to_string(p);
      Tensor x = randn(s, ++seed, 2.f, 0.3f), dy = randn(s, ++seed);
      Tensor gamma = randn({C}, ++seed), beta = randn({C}, ++seed);
      Tensor rm = randn({C}, ++seed), rv = positive({C}, ++seed);
      {
        // The mask byte must follow the CPU's dropout stream and the sign of
        // the BatchNorm output: exactly, except where the CPU's output is
        // within rounding of 0 (statistics summed in another order, or
        // another multiply-add contraction, may flip such a sign).
        INFO(name << " forward");
        Tensor y_ref = Tensor::empty(s), m_ref = Tensor::empty({C}), v_ref = Tensor::empty({C});
        Tensor mask_ref = Tensor::empty(s, DType::U8), z_ref = Tensor::empty(s);
        Tensor rm_ref = rm.to(Device::CPU), rv_ref = rv.to(Device::CPU);
        ops::batchnorm_relu_dropout_forward_train(x, gamma, beta, rm_ref, rv_ref, y_ref, m_ref, v_ref,
                                                  mask_ref, p, 98765);
        ops::batchnorm_forward_train(x, gamma, beta, {}, {}, z_ref, m_ref, v_ref);
        Context ctx(Device::CUDA);
        ctx.make_current();
        auto dev = [](const Tensor& t) { return t.to(Device::CUDA); };
        Tensor dx_ = dev(x), dg = dev(gamma), db = dev(beta), drm = dev(rm), drv = dev(rv);
        Tensor dy_ = Tensor::empty(s, DType::F32, Device::CUDA), dm = Tensor::empty({C}, DType::F32, Device::CUDA);
        Tensor dv = Tensor::empty({C}, DType::F32, Device::CUDA), dmask = Tensor::empty(s, DType::U8, Device::CUDA);
        for (const Tensor* t : {&dy_, &dm, &dv, &dmask}) poison(*t);
        ops::batchnorm_relu_dropout_forward_train(dx_, dg, db, drm, drv, dy_, dm, dv, dmask, p, 98765);
        ctx.synchronize();
        expect_close(name + " y", y_ref, dy_, kReduction);
        expect_close(name + " save_mean", m_ref, dm, kReduction);
        expect_close(name + " save_invstd", v_ref, dv, kReduction);
        expect_close(name + " running_mean", rm_ref, drm, kReduction);
        expect_close(name + " running_var", rv_ref, drv, kReduction);
        Tensor got = dmask.to(Device::CPU);
        double zmax = 0;
        for (int64_t i = 0; i < z_ref.numel(); ++i) zmax = std::max(zmax, double(std::fabs(z_ref.f32()[i])));
        int64_t flipped = 0, wrong = 0;
        for (int64_t i = 0; i < got.numel(); ++i) {
          if (got.view().u8()[i] == mask_ref.view().u8()[i]) continue;
          if (std::fabs(z_ref.f32()[i]) <= 1e-6 * zmax) ++flipped;
          else ++wrong;
        }
        INFO(name << ": " << flipped << " mask bytes differ at a BatchNorm output within rounding of 0");
        CHECK(wrong == 0);
        CHECK(flipped <= 2);
        // With a residual block's skip added in the store.
        Tensor res = randn(s, ++seed), yr_ref = Tensor::empty(s);
        ops::batchnorm_relu_dropout_forward_train(x, gamma, beta, {}, {}, yr_ref, m_ref, v_ref,
                                                  mask_ref, p, 98765, {}, res);
        Tensor dres = dev(res), dyr = Tensor::empty(s, DType::F32, Device::CUDA);
        poison(dyr);
        ops::batchnorm_relu_dropout_forward_train(dx_, dg, db, {}, {}, dyr, dm, dv, dmask, p, 98765,
                                                  {}, dres);
        ctx.synchronize();
        expect_close(name + " y with a residual", yr_ref, dyr, kReduction);
        ops::set_cuda_stream(nullptr);
      }
      // Saved statistics and mask from a CPU forward, the same on both sides.
      Tensor y = Tensor::empty(s), sm = Tensor::empty({C}), si = Tensor::empty({C});
      Tensor mask = Tensor::empty(s, DType::U8);
      ops::batchnorm_relu_dropout_forward_train(x, gamma, beta, {}, {}, y, sm, si, mask, p, 98765);
      OpCase oc(name + " backward");
      Tensor mask_copy = mask.to(Device::CPU);
      int ix = oc.in(x.to(Device::CPU)), ig = oc.in(gamma.to(Device::CPU));
      int ism = oc.in(sm.to(Device::CPU)), isi = oc.in(si.to(Device::CPU));
      int imask = oc.in(std::move(mask)), idy = oc.in(dy.to(Device::CPU));
      int idx = oc.out(s), idg = oc.out({C}), idb = oc.out({C});
      oc.run([&](const std::vector<TensorView>& t) {
        ops::batchnorm_relu_dropout_backward_train(t[ix], t[ig], t[ism], t[isi], t[imask], p, t[idy],
                                                   t[idx], t[idg], t[idb]);
      }, kReduction);
      // With the skip's gradient added to dx.
      OpCase oa(name + " backward + dx_add");
      ix = oa.in(x.to(Device::CPU)), ig = oa.in(gamma.to(Device::CPU));
      ism = oa.in(sm.to(Device::CPU)), isi = oa.in(si.to(Device::CPU));
      imask = oa.in(std::move(mask_copy)), idy = oa.in(dy.to(Device::CPU));
      const int iadd = oa.in(randn(s, ++seed));
      idx = oa.out(s);
      oa.run([&](const std::vector<TensorView>& t) {
        ops::batchnorm_relu_dropout_backward_train(t[ix], t[ig], t[ism], t[isi], t[imask], p, t[idy],
                                                   t[idx], {}, {}, t[iadd]);
      }, kReduction);
    }
  }
}

TEST_CASE("backend ops: element-wise, column copies and affine") {
  uint32_t seed = 500;
  for (int64_t n : {1, 7, 255, 256, 257, 100003}) {
    const Shape s{n};
    const std::string sfx = "[" + std::to_string(n) + "]";
    Tensor x = randn(s, ++seed, 4.f), dy = randn(s, ++seed), b = randn(s, ++seed);
    auto unary = [&](const char* op, auto f) {
      OpCase oc(std::string(op) + sfx);
      int ix = oc.in(x.to(Device::CPU)), iy = oc.out(s);
      oc.run([&](const std::vector<TensorView>& t) { f(t[ix], t[iy]); }, 0.0);
    };
    auto grad = [&](const char* op, auto f) {
      OpCase oc(std::string(op) + sfx);
      int ix = oc.in(x.to(Device::CPU)), idy = oc.in(dy.to(Device::CPU)), idx = oc.out(s);
      oc.run([&](const std::vector<TensorView>& t) { f(t[ix], t[idy], t[idx]); }, 0.0);
    };
    unary("relu_forward", [](auto& a, auto& y) { ops::relu_forward(a, y); });
    unary("relu6_forward", [](auto& a, auto& y) { ops::relu6_forward(a, y); });
    unary("scale", [](auto& a, auto& y) { ops::scale(a, -0.75f, y); });
    unary("grad_reverse_forward", [](auto& a, auto& y) { ops::grad_reverse_forward(a, y); });
    grad("relu_backward", [](auto& a, auto& d, auto& dx) { ops::relu_backward(a, d, dx); });
    grad("relu6_backward", [](auto& a, auto& d, auto& dx) { ops::relu6_backward(a, d, dx); });
    grad("grad_reverse_backward", [](auto&, auto& d, auto& dx) { ops::grad_reverse_backward(d, dx, 0.3f); });
    {
      OpCase oc("add" + sfx);
      int ia = oc.in(x.to(Device::CPU)), ib = oc.in(b.to(Device::CPU)), iy = oc.out(s);
      oc.run([&](const std::vector<TensorView>& t) { ops::add_forward(t[ia], t[ib], t[iy]); }, 0.0);
    }
    {
      OpCase oc("accumulate" + sfx);
      int ia = oc.in(x.to(Device::CPU)), iy = oc.inout(b.to(Device::CPU));
      oc.run([&](const std::vector<TensorView>& t) { ops::accumulate(t[ia], t[iy]); }, 0.0);
    }
    {
      OpCase oc("fill" + sfx);
      int iy = oc.out(s);
      oc.run([&](const std::vector<TensorView>& t) { fill(t[iy], 2.5f); }, 0.0);
    }
  }
  for (bool acc : {false, true}) {
    OpCase oc(std::string("copy_columns") + (acc ? " accumulate" : ""));
    int isrc = oc.in(randn({37, 51}, 1)), idst = oc.inout(randn({37, 80}, 2));
    oc.run([&](const std::vector<TensorView>& t) {
      ops::copy_columns(t[isrc], 3, t[idst], 40, 17, acc);
      ops::copy_columns(t[isrc], 0, t[idst], 0, 3, acc);
    }, 0.0);
  }
  OpCase aff("affine_columns[129,34]");
  int ix = aff.in(randn({129, 34}, 3)), im = aff.in(randn({34}, 4)), ia = aff.in(randn({34}, 5));
  int iy = aff.out({129, 34});
  aff.run([&](const std::vector<TensorView>& t) { ops::affine_columns(t[ix], t[im], t[ia], t[iy]); },
          kElementwise);
  // IEEE subtraction and division on both sides: the same bits (tolerance 0).
  OpCase st("standardize_columns[129,59] over 32 columns");
  int sx = st.in(randn({129, 59}, 6, 300.f)), sm = st.in(randn({32}, 7, 100.f));
  int ss = st.in(positive({32}, 8)), sy = st.out({129, 59});
  st.run([&](const std::vector<TensorView>& t) { ops::standardize_columns(t[sx], t[sm], t[ss], t[sy]); },
         0.0);
}

// 16-bit activation tensors (F16 / BF16): every op that takes them, with each
// pairing of input and output dtypes a convolution allows, against the CPU
// reference's float32-then-round. The convolutions run on the 16-bit tensor
// cores (inputs and weights in 16 bits), hence kHalf; the rest are exact.
TEST_CASE("backend ops: 16-bit activations (cast, conv and fused conv per dtype pairing, max pool, upsample-add)") {
  const DType kTypes[] = {DType::F16, DType::BF16};
  uint32_t seed = 1700;
  for (int64_t n : {1, 37, 1000}) {
    Tensor x = randn({n}, ++seed, 300.f);
    x.f32()[0] = 65520.f;  // F16's overflow edge (to infinity)
    for (DType a : {DType::F32, DType::F16, DType::BF16})
      for (DType b : {DType::F32, DType::F16, DType::BF16}) {
        if (a == DType::F32 && b == DType::F32) continue;
        Tensor src = Tensor::empty({n}, a);
        ops::cast(x, src);
        OpCase oc(std::string("cast ") + dtype_name(a) + "->" + dtype_name(b) + "[" +
                  std::to_string(n) + "]");
        int ix = oc.in(std::move(src)), iy = oc.out({n}, b);
        oc.run([&](const std::vector<TensorView>& t) { ops::cast(t[ix], t[iy]); }, 0.0);
      }
  }
  // Input and output dtype pairings: the hourglass's body (S -> S), stem
  // (F32 -> S) and heatmap heads (S -> F32).
  int pairing = 0;
  for (const ConvCase& c : kConvCases) {
    if (c.groups != 1) continue;
    for (DType st : kTypes)
      for (int k = 0; k < 3; ++k, ++pairing) {
        const DType xt = k == 1 ? DType::F32 : st, yt = k == 2 ? DType::F32 : st;
        const bool in_bn = pairing % 2 == 0, out_bn = pairing % 3 != 0, relu = pairing % 2 == 1,
                   residual = pairing % 4 < 2;
        ops::ConvParams p{c.stride, c.pad, 1};
        const std::string name =
            shape_name("conv2d_fused", {c.N, c.C, c.H, c.W, c.K, c.R, c.S, c.stride, c.pad}) +
            " " + dtype_name(xt) + "->" + dtype_name(yt) + (in_bn ? "+in_bn" : "") +
            (out_bn ? "+out_bn" : "") + (relu ? "+relu" : "") + (residual ? "+residual" : "");
        fused_conv_case(name, c, seed, in_bn, out_bn, relu, residual, kHalf, xt, yt);
        OpCase plain(name + " conv2d_forward");
        int jx = plain.in(stored_as(randn({c.N, c.C, c.H, c.W}, ++seed), xt));
        int jw = plain.in(randn({c.K, c.C, c.R, c.S}, ++seed, 0.3f));
        const Shape ys{c.N, c.K, (c.H + 2 * c.pad - c.R) / c.stride + 1,
                       (c.W + 2 * c.pad - c.S) / c.stride + 1};
        int jb = plain.in(randn({c.K}, ++seed)), jy = plain.out(ys, yt);
        plain.run([&](const std::vector<TensorView>& t) {
          ops::conv2d_forward(t[jx], t[jw], t[jb], t[jy], p);
        }, kHalf);
      }
  }
  for (DType st : kTypes)
    for (const Shape& s : {Shape{1, 1, 2, 2}, Shape{2, 3, 7, 9}, Shape{2, 16, 64, 64}, Shape{1, 5, 8, 6}}) {
      const Shape half{s[0], s[1], s[2] / 2, s[3] / 2};
      const Shape dbl{s[0], s[1], 2 * s[2], 2 * s[3]};
      auto as16 = [&](Tensor f) { return stored_as(std::move(f), st); };
      const std::string tag = std::string(dtype_name(st)) + s.str();
      {
        OpCase oc("maxpool2x2_forward " + tag);
        int ix = oc.in(as16(coarse(s, ++seed))), iy = oc.out(half, st);
        oc.run([&](const std::vector<TensorView>& t) { ops::maxpool2x2_forward(t[ix], t[iy]); }, 0.0);
      }
      {
        OpCase oc("upsample_add_forward " + tag);
        int ia = oc.in(as16(randn(dbl, ++seed))), il = oc.in(as16(randn(s, ++seed)));
        int iy = oc.out(dbl, st);
        oc.run([&](const std::vector<TensorView>& t) { ops::upsample_add_forward(t[ia], t[il], t[iy]); }, 0.0);
      }
    }
}

TEST_CASE("backend ops: max pooling, nearest upsampling, merge, bilinear resize") {
  uint32_t seed = 600;
  for (const Shape& s : {Shape{1, 1, 2, 2}, Shape{2, 3, 7, 9}, Shape{2, 16, 64, 64}, Shape{1, 5, 8, 6}}) {
    const Shape half{s[0], s[1], s[2] / 2, s[3] / 2};
    const Shape dbl{s[0], s[1], 2 * s[2], 2 * s[3]};
    Tensor x = coarse(s, ++seed);
    {
      OpCase oc("maxpool2x2_forward" + s.str());
      int ix = oc.in(x.to(Device::CPU)), iy = oc.out(half);
      oc.run([&](const std::vector<TensorView>& t) { ops::maxpool2x2_forward(t[ix], t[iy]); }, 0.0);
    }
    {
      OpCase oc("maxpool2x2_backward" + s.str());
      int ix = oc.in(x.to(Device::CPU)), idy = oc.in(randn(half, ++seed)), idx = oc.out(s);
      oc.run([&](const std::vector<TensorView>& t) { ops::maxpool2x2_backward(t[ix], t[idy], t[idx]); }, 0.0);
    }
    {
      OpCase oc("maxpool2x2_backward + dx_add" + s.str());
      int ix = oc.in(x.to(Device::CPU)), idy = oc.in(randn(half, ++seed));
      int iadd = oc.in(randn(s, ++seed)), idx = oc.out(s);
      oc.run([&](const std::vector<TensorView>& t) {
        ops::maxpool2x2_backward(t[ix], t[idy], t[idx], t[iadd]);
      }, 0.0);
    }
    {
      OpCase oc("upsample_nearest2x_forward" + s.str());
      int ix = oc.in(x.to(Device::CPU)), iy = oc.out(dbl);
      oc.run([&](const std::vector<TensorView>& t) { ops::upsample_nearest2x_forward(t[ix], t[iy]); }, 0.0);
    }
    {
      OpCase oc("upsample_nearest2x_backward" + s.str());
      int idy = oc.in(randn(dbl, ++seed)), idx = oc.out(s);
      oc.run([&](const std::vector<TensorView>& t) { ops::upsample_nearest2x_backward(t[idy], t[idx]); },
             kElementwise);
    }
    {
      OpCase oc("upsample_add_forward" + s.str());
      int ia = oc.in(randn(dbl, ++seed)), il = oc.in(x.to(Device::CPU)), iy = oc.out(dbl);
      oc.run([&](const std::vector<TensorView>& t) { ops::upsample_add_forward(t[ia], t[il], t[iy]); }, 0.0);
    }
    for (ResizeMode mode : {ResizeMode::AlignCorners, ResizeMode::HalfPixel, ResizeMode::Asymmetric})
      for (const Shape& o : {Shape{s[0], s[1], 2 * s[2] + 1, s[3] + 3}, Shape{s[0], s[1], 1, std::max<int64_t>(1, s[3] / 2)}}) {
        const std::string name = "bilinear" + s.str() + "->" + o.str() + " mode " +
                                 std::to_string(int(mode));
        OpCase f(name + " forward");
        int ix = f.in(x.to(Device::CPU)), iy = f.out(o);
        f.run([&](const std::vector<TensorView>& t) { ops::bilinear_forward(t[ix], t[iy], mode); },
              kElementwise * 10);
        OpCase b(name + " backward");
        int idy = b.in(randn(o, ++seed)), idx = b.out(s);
        b.run([&](const std::vector<TensorView>& t) { ops::bilinear_backward(t[idy], t[idx], mode); },
              kReduction);
      }
  }
}

TEST_CASE("backend ops: dropout reproduces the CPU mask bit for bit") {
  for (int64_t n : {1, 1000, 65537}) {
    for (float p : {0.f, 0.5f, 0.9f}) {
      const std::string name = "dropout[" + std::to_string(n) + "] p " + std::to_string(p);
      OpCase f(name + " forward");
      int ix = f.in(randn({n}, 7)), iy = f.out({n}), im = f.out({n}, DType::U8);
      f.run([&](const std::vector<TensorView>& t) { ops::dropout_forward(t[ix], t[iy], t[im], p, 1234567); },
            0.0);
      Tensor x = randn({n}, 7), y = Tensor::empty({n}), mask = Tensor::empty({n}, DType::U8);
      ops::dropout_forward(x, y, mask, p, 1234567);
      OpCase b(name + " backward");
      int imask = b.in(std::move(mask)), idy = b.in(randn({n}, 8)), idx = b.out({n});
      b.run([&](const std::vector<TensorView>& t) { ops::dropout_backward(t[imask], t[idy], t[idx], p); },
            0.0);
    }
  }
}

TEST_CASE("backend ops: soft-argmax forward and backward") {
  uint32_t seed = 700;
  for (const Shape& s : {Shape{2, 3, 5, 7}, Shape{1, 16, 64, 64}, Shape{4, 17, 64, 64}, Shape{1, 1, 1, 1}})
    for (float beta : {1.f, 5.f}) {
      const std::string name = "softargmax" + s.str() + " beta " + std::to_string(beta);
      Tensor heat = randn(s, ++seed, 2.f);
      OpCase f(name + " forward");
      int ih = f.in(heat.to(Device::CPU)), ip = f.out(s), ic = f.out({s[0], s[1], 2});
      f.run([&](const std::vector<TensorView>& t) { ops::softargmax_forward(t[ih], t[ip], t[ic], beta); },
            kReduction);
      Tensor prob = Tensor::empty(s), coords = Tensor::empty({s[0], s[1], 2});
      ops::softargmax_forward(heat, prob, coords, beta);
      OpCase b(name + " backward");
      int iprob = b.in(std::move(prob)), idc = b.in(randn({s[0], s[1], 2}, ++seed)), idh = b.out(s);
      b.run([&](const std::vector<TensorView>& t) { ops::softargmax_backward(t[iprob], t[idc], t[idh], beta); },
            kReduction);
    }
}

TEST_CASE("backend ops: losses, forward scalar and backward") {
  Context ctx(Device::CUDA);
  ctx.make_current();
  // Heatmap MSE, with and without joint weights.
  for (bool weighted : {false, true}) {
    INFO("heatmap_mse weighted " << weighted);
    Tensor pred = randn({3, 5, 16, 16}, 1), target = randn({3, 5, 16, 16}, 2);
    Tensor jw = positive({3, 5}, 3);
    const TensorView w = weighted ? jw.view() : TensorView();
    const float ref = ops::heatmap_mse_forward(pred, target, w);
    Tensor dp = pred.to(Device::CUDA), dt = target.to(Device::CUDA), djw = jw.to(Device::CUDA);
    const float got = ops::heatmap_mse_forward(dp, dt, weighted ? djw.view() : TensorView());
    CHECK(got == doctest::Approx(ref).epsilon(1e-5));
    OpCase b("heatmap_mse_backward");
    int ip = b.in(pred.to(Device::CPU)), it = b.in(target.to(Device::CPU)), iw = b.in(jw.to(Device::CPU));
    int id = b.out(pred.shape());
    b.run([&](const std::vector<TensorView>& t) {
      ops::heatmap_mse_backward(t[ip], t[it], weighted ? t[iw] : TensorView(), t[id], 0.7f);
    }, kElementwise * 10);
    ctx.make_current();
  }
  {
    Tensor logits = randn({7, 9, 3}, 4, 3.f);
    Tensor labels = Tensor::empty({7, 9}, DType::I32);
    for (int64_t i = 0; i < labels.numel(); ++i) labels.view().i32()[i] = int32_t(i % 4) - 1;
    const float ref = ops::cross_entropy_forward(logits, labels);
    Tensor dl = logits.to(Device::CUDA), dlab = labels.to(Device::CUDA);
    CHECK(ops::cross_entropy_forward(dl, dlab) == doctest::Approx(ref).epsilon(1e-5));
    OpCase b("cross_entropy_backward");
    int il = b.in(logits.to(Device::CPU)), ilab = b.in(labels.to(Device::CPU)), id = b.out(logits.shape());
    b.run([&](const std::vector<TensorView>& t) { ops::cross_entropy_backward(t[il], t[ilab], t[id], 1.5f); },
          kElementwise * 10);
    ctx.make_current();
  }
  {
    Tensor pred = randn({4096, 51}, 5), target = randn({4096, 51}, 6);
    const float ref = ops::l1_forward(pred, target);
    Tensor dp = pred.to(Device::CUDA), dt = target.to(Device::CUDA);
    CHECK(ops::l1_forward(dp, dt) == doctest::Approx(ref).epsilon(1e-5));
    OpCase b("l1_backward");
    int ip = b.in(pred.to(Device::CPU)), it = b.in(target.to(Device::CPU)), id = b.out(pred.shape());
    b.run([&](const std::vector<TensorView>& t) { ops::l1_backward(t[ip], t[it], t[id], 2.f); }, kElementwise);
  }
  ops::set_cuda_stream(nullptr);
}

TEST_CASE("backend ops: RMSprop and Adam steps, gradient clipping") {
  auto run = [](bool adam, float momentum, float wd, Device d) {
    Tensor w = randn({33, 17}, 1).to(d), g = randn({33, 17}, 2).to(d);
    Tensor b = randn({33}, 3).to(d), gb = randn({33}, 4).to(d);
    std::vector<nn::Param> params = {{"w", &w, &g}, {"b", &b, &gb}};
    std::unique_ptr<nn::Optimizer> opt;
    if (adam)
      opt = std::make_unique<nn::Adam>(params, nn::AdamOptions{1e-2f, 0.9f, 0.999f, 1e-8f, wd});
    else
      opt = std::make_unique<nn::RMSprop>(params, nn::RMSpropOptions{1e-2f, 0.99f, 1e-8f, wd, momentum});
    for (int step = 0; step < 3; ++step) {
      nn::clip_grad_norm(params, 5.f);
      opt->step();
    }
    Tensor out = Tensor::empty({33 * 17 + 33});
    Tensor wh = w.to(Device::CPU), bh = b.to(Device::CPU);
    std::memcpy(out.f32(), wh.f32(), wh.nbytes());
    std::memcpy(out.f32() + 33 * 17, bh.f32(), bh.nbytes());
    return out;
  };
  Context ctx(Device::CUDA);
  ctx.make_current();
  for (bool adam : {false, true})
    for (float momentum : {0.f, 0.9f})
      for (float wd : {0.f, 1e-3f}) {
        if (adam && momentum > 0.f) continue;
        INFO((adam ? "adam" : "rmsprop") << " momentum " << momentum << " wd " << wd);
        Tensor ref = run(adam, momentum, wd, Device::CPU);
        Tensor got = run(adam, momentum, wd, Device::CUDA);
        expect_close("optimizer", ref, got, 1e-5);
      }
  ops::set_cuda_stream(nullptr);
}

TEST_CASE("backend ops: max-norm row constraint on the device (no host round trip)") {
  // Rows of norm about 2*sqrt(in): some above max_norm (scaled), some below (kept).
  for (int in : {17, 1024}) {
    const float max_norm = 2.f * std::sqrt(float(in));
    auto run = [&](Device d) {
      nn::Linear l(in, 45);
      copy(randn({45, in}, 11, 2.f), l.weight);
      l.to_device(d);
      nn::apply_max_norm(l, max_norm);
      return l.weight.to(Device::CPU);
    };
    Context ctx(Device::CUDA);
    ctx.make_current();
    Tensor ref = run(Device::CPU), got = run(Device::CUDA);
    ops::set_cuda_stream(nullptr);
    int scaled = 0;
    Tensor orig = randn({45, in}, 11, 2.f);
    for (int r = 0; r < 45; ++r) scaled += ref.f32()[int64_t(r) * in] != orig.f32()[int64_t(r) * in];
    CHECK(scaled > 0);
    CHECK(scaled < 45);
    expect_close("max_norm_rows[45," + std::to_string(in) + "]", ref, got, 1e-6);
  }
}

TEST_CASE("backend ops: CUDA results are bitwise reproducible run to run") {
  Context ctx(Device::CUDA);
  ctx.make_current();
  Tensor x = randn({4, 64, 16, 16}, 1).to(Device::CUDA), w = randn({64, 64, 3, 3}, 2, 0.1f).to(Device::CUDA);
  Tensor dy = randn({4, 64, 16, 16}, 3).to(Device::CUDA);
  auto once = [&] {
    Tensor dx = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
    Tensor dw = Tensor::empty(w.shape(), DType::F32, Device::CUDA);
    Tensor db = Tensor::empty({64}, DType::F32, Device::CUDA);
    ops::conv2d_backward(x, w, dy, dx, dw, db, {1, 1, 1});
    Tensor g = Tensor::empty({64}), bm = Tensor::empty({64}), y = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
    Tensor gd = Tensor::zeros({64}, DType::F32, Device::CUDA), bd = Tensor::zeros({64}, DType::F32, Device::CUDA);
    Tensor sm = Tensor::empty({64}, DType::F32, Device::CUDA), si = Tensor::empty({64}, DType::F32, Device::CUDA);
    fill(gd, 1.f);
    ops::batchnorm_forward_train(x, gd, bd, {}, {}, y, sm, si);
    std::vector<Tensor> out;
    out.push_back(dx.to(Device::CPU));
    out.push_back(dw.to(Device::CPU));
    out.push_back(db.to(Device::CPU));
    out.push_back(y.to(Device::CPU));
    return out;
  };
  std::vector<Tensor> a = once(), b = once();
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("output " << i);
    CHECK(std::memcmp(a[i].view().data, b[i].view().data, a[i].nbytes()) == 0);
  }
  ops::set_cuda_stream(nullptr);
}

// ---- whole models: the same network, forward and backward, on both backends.

namespace {

// A view's values in a fresh host tensor (arena views outlive no reset).
Tensor to_host(const TensorView& v) {
  Tensor t = Tensor::empty(v.shape);
  copy(v, t);
  return t;
}

std::vector<Tensor> grads_on_host(nn::Module& m) {
  std::vector<Tensor> g;
  for (const nn::Param& p : m.parameters()) g.push_back(p.grad->to(Device::CPU));
  return g;
}

}  // namespace

namespace {
// 2 stacks, both heads, 64x64 input: every layer type in a few milliseconds.
nn::HourglassConfig small_hourglass_config() {
  nn::HourglassConfig c;
  c.stacks = 2;
  c.num_feats = 32;
  c.num_joints = 5;
  c.input_size = 64;
  c.depth = 2;
  c.stem_channels = 16;
  c.attribute_channels = 8;
  c.domain_hidden = 8;
  return c;
}

// The same buffers in both nets, running statistics and affine parameters
// away from their (0, 1) init, so the fused inference's folded BatchNorms are
// really exercised.
void same_random_buffers(nn::Module& a, nn::Module& b, uint32_t seed) {
  std::vector<nn::Buffer> ba = a.buffers(), bb = b.buffers();
  for (size_t i = 0; i < ba.size(); ++i) {
    const Shape s = ba[i].value->shape();
    const bool var = ba[i].name.find("running_var") != std::string::npos;
    Tensor v = var ? positive(s, ++seed) : randn(s, ++seed, 0.2f);
    copy(v, *ba[i].value);
    copy(v, *bb[i].value);
  }
}
}  // namespace

TEST_CASE("model parity: stacked hourglass forward and backward, CUDA vs CPU") {
  const nn::HourglassConfig c = small_hourglass_config();
  nn::HourglassNet cpu_net(c, 7), gpu_net(c, 7);
  same_random_buffers(cpu_net, gpu_net, 300);
  gpu_net.to_device(Device::CUDA);
  Tensor x = randn({2, 3, 64, 64}, 11);
  Tensor target = randn({2, 5, 16, 16}, 12, 0.1f);
  Context ctx(Device::CUDA);
  ctx.make_current();
  Arena cpu_arena(Device::CPU), gpu_arena(Device::CUDA);
  Tensor xd = x.to(Device::CUDA), td = target.to(Device::CUDA);

  for (int run = 0; run < 3; ++run) {
    // 0: fused inference on both; 1: unfused CPU vs fused CUDA; 2: training
    const nn::Mode mode = run == 2 ? nn::Mode::Train : nn::Mode::Infer;
    INFO("run " << run << " mode " << (mode == nn::Mode::Train ? "train" : "infer"));
    cpu_arena.reset();
    gpu_arena.reset();
    nn::HourglassOutputs oc, og;
    {
      nn::ScopedNoGrad no_grad;  // fused inference (train mode: no effect)
      if (run == 1) {
        nn::ScopedUnfused unfused;
        oc = cpu_net.forward(cpu_arena, x, mode);
      } else {
        oc = cpu_net.forward(cpu_arena, x, mode);
      }
      if (mode == nn::Mode::Infer) og = gpu_net.forward(gpu_arena, xd, mode);
    }
    if (mode == nn::Mode::Train) og = gpu_net.forward(gpu_arena, xd, mode);
    for (size_t s = 0; s < oc.heatmaps.size(); ++s) {
      expect_close("heatmaps stack " + std::to_string(s), to_host(oc.heatmaps[s]),
                   to_host(og.heatmaps[s]), 1e-4);
    }
    if (mode == nn::Mode::Train) {
      std::vector<TensorView> dc, dg;
      const float lc = nn::heatmap_mse_loss(cpu_arena, oc.heatmaps, target, {}, &dc);
      const float lg = nn::heatmap_mse_loss(gpu_arena, og.heatmaps, td, {}, &dg);
      CHECK(lg == doctest::Approx(lc).epsilon(1e-4));
      nn::HourglassGrads gc, gg;
      gc.heatmaps = dc;
      gg.heatmaps = dg;
      cpu_net.backward(cpu_arena, gc);
      gpu_net.backward(gpu_arena, gg);
      ctx.synchronize();
      std::vector<Tensor> rc = grads_on_host(cpu_net), rg = grads_on_host(gpu_net);
      const std::vector<nn::Param> names = cpu_net.parameters();
      for (size_t i = 0; i < rc.size(); ++i) expect_close("grad " + names[i].name, rc[i], rg[i], 1e-3);
    }
  }
  ops::set_cuda_stream(nullptr);
}

TEST_CASE("model parity: hourglass fused inference with 16-bit activations, CUDA vs CPU") {
  const nn::HourglassConfig c = small_hourglass_config();
  nn::HourglassNet cpu_net(c, 7), gpu_net(c, 7);
  same_random_buffers(cpu_net, gpu_net, 350);
  gpu_net.to_device(Device::CUDA);
  Tensor x = randn({2, 3, 64, 64}, 13);
  Context ctx(Device::CUDA);
  ctx.make_current();
  AtExit reset{[] { ops::set_cuda_stream(nullptr); }};
  Tensor xd = x.to(Device::CUDA);
  for (DType t : {DType::F16, DType::BF16}) {
    INFO("activations " << dtype_name(t));
    cpu_net.set_activation_dtype(t);
    gpu_net.set_activation_dtype(t);
    Arena cpu_arena(Device::CPU), gpu_arena(Device::CUDA);
    nn::ScopedNoGrad no_grad;
    const nn::HourglassOutputs oc = cpu_net.forward(cpu_arena, x, nn::Mode::Infer);
    const nn::HourglassOutputs og = gpu_net.forward(gpu_arena, xd, nn::Mode::Infer);
    ctx.synchronize();
    // CUDA also rounds the weights to 16 bits (the tensor cores' inputs).
    for (size_t s = 0; s < oc.heatmaps.size(); ++s)
      expect_close("heatmaps stack " + std::to_string(s), to_host(oc.heatmaps[s]),
                   to_host(og.heatmaps[s]), t == DType::F16 ? 1e-2 : 5e-2);
    expect_close("features", to_host(oc.features), to_host(og.features),
                 t == DType::F16 ? 1e-2 : 5e-2);
  }
}

TEST_CASE("model parity: progressive lifter forward and backward, CUDA vs CPU") {
  nn::LifterConfig c;
  c.kind = "progressive";
  c.width = 64;
  c.use_attributes = true;
  c.dropout = 0.5f;
  auto cpu_net = nn::Lifter::create(c, 3);
  auto gpu_net = nn::Lifter::create(c, 3);
  gpu_net->to_device(Device::CUDA);
  cpu_net->set_dropout_seed(5);
  gpu_net->set_dropout_seed(5);
  const int64_t n = 37;
  Tensor x = randn({n, c.input_dim()}, 21);
  Tensor target = randn({n, c.output_dim()}, 22);
  Context ctx(Device::CUDA);
  ctx.make_current();
  Arena cpu_arena(Device::CPU), gpu_arena(Device::CUDA);
  Tensor xd = x.to(Device::CUDA), td = target.to(Device::CUDA);
  for (nn::Mode mode : {nn::Mode::Infer, nn::Mode::Train}) {
    INFO("mode " << (mode == nn::Mode::Train ? "train" : "infer"));
    cpu_arena.reset();
    gpu_arena.reset();
    nn::LifterOutput oc = cpu_net->forward(cpu_arena, x, mode);
    nn::LifterOutput og = gpu_net->forward(gpu_arena, xd, mode);
    if (mode == nn::Mode::Infer) {  // and the fused MLP kernels against the unfused CPU
      nn::ScopedNoGrad no_grad;
      Arena fused_arena(Device::CUDA);
      nn::LifterOutput of = gpu_net->forward(fused_arena, xd, mode);
      for (size_t b = 0; b < oc.poses.size(); ++b)
        expect_close("fused pose block " + std::to_string(b), to_host(oc.poses[b]),
                     to_host(of.poses[b]), 1e-4);
    }
    REQUIRE(oc.poses.size() == og.poses.size());
    for (size_t b = 0; b < oc.poses.size(); ++b) {
      expect_close("pose block " + std::to_string(b), to_host(oc.poses[b]), to_host(og.poses[b]),
                   1e-4);
    }
    if (mode == nn::Mode::Train) {
      std::vector<TensorView> dc, dg;
      const float lc = nn::lifter_l1_loss(cpu_arena, oc, target, dc);
      const float lg = nn::lifter_l1_loss(gpu_arena, og, td, dg);
      CHECK(lg == doctest::Approx(lc).epsilon(1e-4));
      TensorView dxc = cpu_net->backward(cpu_arena, dc);
      TensorView dxg = gpu_net->backward(gpu_arena, dg);
      expect_close("input gradient", to_host(dxc), to_host(dxg), 1e-3);
      std::vector<Tensor> rc = grads_on_host(*cpu_net), rg = grads_on_host(*gpu_net);
      const std::vector<nn::Param> names = cpu_net->parameters();
      for (size_t i = 0; i < rc.size(); ++i) expect_close("grad " + names[i].name, rc[i], rg[i], 1e-3);
    }
  }
  ops::set_cuda_stream(nullptr);
}

namespace {

// A lifter with random BatchNorm statistics and normalisation, as a Model.
std::unique_ptr<nn::Model> random_lifter_model(const std::string& kind, bool attributes,
                                               uint32_t seed, int width = 64) {
  nn::LifterConfig c;
  c.kind = kind;
  c.width = width;
  c.blocks = 2;
  c.use_attributes = attributes;
  auto l = nn::Lifter::create(c, seed);
  for (const nn::Buffer& b : l->buffers()) {
    const bool positive_values = b.name.find("running_var") != std::string::npos ||
                                 b.name.find(".std") != std::string::npos;
    Tensor v = positive_values ? positive(b.value->shape(), ++seed) : randn(b.value->shape(), ++seed, 0.3f);
    copy(v, *b.value);
  }
  return nn::make_model(std::move(l));
}

Tensor attributes_for(int64_t n, uint32_t seed) {
  Tensor a = Tensor::zeros({n, 27});
  std::mt19937 rng(seed);
  for (int64_t r = 0; r < n; ++r)
    for (int j = 0; j < 9; ++j) a.f32()[r * 27 + j * 3 + int(rng() % 3)] = 1.f;
  return a;
}

}  // namespace

const char* launch_name(ck::MlpLaunch launch) {
  switch (launch) {
    case ck::MlpLaunch::Cooperative: return "cooperative grid";
    case ck::MlpLaunch::Cluster: return "cluster launch";
    case ck::MlpLaunch::Prefetch: return "prefetching grid";
  }
  return "?";
}

// A batch-1 forward of a random lifter on the CPU and through the persistent
// kernel with the current launch: the poses must agree. The prefetching grid
// reads the same weights in the same fmaf order as the cooperative grid, so
// its poses must also equal the cooperative launch's bit for bit.
void expect_persistent_matches_cpu(const char* kind, bool attributes, int width, uint32_t seed) {
  auto cpu_model = random_lifter_model(kind, attributes, seed, width);
  auto gpu_model = random_lifter_model(kind, attributes, seed, width);
  gpu_model->module().to_device(Device::CUDA);
  REQUIRE(nn::PersistentLifter::available());
  Context ctx(Device::CUDA);
  ctx.make_current();
  Tensor x = randn({1, 16, 2}, seed + 10, 1.5f);
  Tensor a = attributes_for(1, seed + 20);
  nn::ModelInputs in{x.view(), attributes ? a.view() : TensorView()};
  Arena ca(Device::CPU), ga(Device::CUDA);
  auto oc = cpu_model->forward(ca, in);
  auto og = gpu_model->forward(ga, in);
  ctx.synchronize();
  REQUIRE(oc.size() == og.size());
  for (size_t i = 0; i < oc.size(); ++i) expect_close(oc[i].name, to_host(oc[i].value), to_host(og[i].value), 1e-4);
  if (ck::mlp_launch() == ck::MlpLaunch::Prefetch) {
    std::vector<Tensor> prefetched;
    for (const auto& o : og) prefetched.push_back(to_host(o.value));
    ck::set_mlp_launch(ck::MlpLaunch::Cooperative);
    Arena ga2(Device::CUDA);
    auto oco = gpu_model->forward(ga2, in);
    ctx.synchronize();
    ck::set_mlp_launch(ck::MlpLaunch::Prefetch);
    REQUIRE(oco.size() == prefetched.size());
    for (size_t i = 0; i < oco.size(); ++i) {
      INFO(oco[i].name << ": prefetching vs cooperative grid");
      const Tensor coop = to_host(oco[i].value);
      REQUIRE(coop.nbytes() == prefetched[i].nbytes());
      CHECK(std::memcmp(coop.view().data, prefetched[i].view().data, coop.nbytes()) == 0);
    }
  }
  ops::set_cuda_stream(nullptr);
}

TEST_CASE("persistent lifter: batch 1 in one launch equals the CPU model (martinez, progressive, two_block)") {
  std::vector<ck::MlpLaunch> launches = {ck::MlpLaunch::Cooperative, ck::MlpLaunch::Prefetch};
  if (ck::mlp_cluster_supported()) launches.push_back(ck::MlpLaunch::Cluster);  // sm_90+
  AtExit launch_reset{[] { ck::set_mlp_launch(ck::MlpLaunch::Cooperative); }};
  for (ck::MlpLaunch launch : launches)
  for (const char* kind : {"martinez", "progressive", "two_block"}) {
    ck::set_mlp_launch(launch);
    for (bool attributes : {false, true}) {
      INFO(kind << (attributes ? " + attributes" : "") << ", " << launch_name(launch));
      auto cpu_model = random_lifter_model(kind, attributes, 50);
      auto gpu_model = random_lifter_model(kind, attributes, 50);
      gpu_model->module().to_device(Device::CUDA);
      REQUIRE(nn::PersistentLifter::available());
      Context ctx(Device::CUDA);
      ctx.make_current();
      for (uint32_t trial = 0; trial < 2; ++trial) {  // a second input: nothing stale
        Tensor x = randn({1, 16, 2}, 60 + trial, 1.5f);
        Tensor a = attributes_for(1, 70 + trial);
        nn::ModelInputs in{x.view(), attributes ? a.view() : TensorView()};
        Arena ca(Device::CPU), ga(Device::CUDA);
        auto oc = cpu_model->forward(ca, in);
        auto og = gpu_model->forward(ga, in);
        ctx.synchronize();
        REQUIRE(oc.size() == og.size());
        for (size_t i = 0; i < oc.size(); ++i) {
          CHECK(oc[i].name == og[i].name);
          expect_close(oc[i].name, to_host(oc[i].value), to_host(og[i].value), 1e-4);
        }
      }
      // The program: progressive and two_block have six regressors, martinez one.
      // Phases follow the longest dependency chain: in the progressive net each
      // regressor reads the one before it (block II refines block I), so six
      // regressors deep; two_block's six are independent and share phases.
      nn::Lifter& l = dynamic_cast<nn::Lifter&>(gpu_model->module());
      nn::PersistentLifter plan(l);
      const int per_regressor = 2 + 2 * l.config().blocks;
      CHECK(plan.steps() == int(l.regressors().size()) * per_regressor);
      if (std::string(kind) == "progressive")
        CHECK(plan.phases() == 6 * per_regressor);
      else
        CHECK(plan.phases() == per_regressor);
      ops::set_cuda_stream(nullptr);
    }
  }
}

TEST_CASE("persistent lifter, prefetching grid: full-width rows held in registers, wider rows and shared phases read directly") {
  AtExit launch_reset{[] { ck::set_mlp_launch(ck::MlpLaunch::Cooperative); }};
  ck::set_mlp_launch(ck::MlpLaunch::Prefetch);
  // Width 1024: every hidden row is exactly the register capacity (8 float4 per lane).
  for (const char* kind : {"martinez", "progressive"}) {
    INFO(kind << ", width 1024");
    expect_persistent_matches_cpu(kind, false, 1024, 300);
  }
  // two_block's six regressors share phases: 6 x 1024 rows, more than the grid
  // has warps, so warps take further rows without held weights.
  {
    INFO("two_block, width 1024");
    expect_persistent_matches_cpu("two_block", false, 1024, 310);
  }
  // Width 1536 is wider than a warp can hold: those rows take dot_row.
  {
    INFO("martinez, width 1536");
    expect_persistent_matches_cpu("martinez", true, 1536, 320);
  }
}

TEST_CASE("CUDA graph forward: replays equal eager forwards, new inputs are seen, shapes recapture") {
  Context ctx(Device::CUDA);
  ctx.make_current();
  // An eager forward of `in` against the graph's replay of `replay_in` (the same values).
  auto expect_replay = [&](nn::Model& model, nn::GraphForward& graph, const nn::ModelInputs& in,
                           const nn::ModelInputs& replay_in) {
    Arena ea(Device::CUDA);
    ctx.make_current();
    auto eager = model.forward(ea, in);
    ctx.synchronize();
    auto replay = graph.run(replay_in);
    graph.synchronize();
    REQUIRE(eager.size() == replay.size());
    for (size_t i = 0; i < eager.size(); ++i)
      expect_close(eager[i].name, to_host(eager[i].value), to_host(replay[i].value), 1e-6);
  };
  SUBCASE("hourglass") {
    auto model = nn::make_model(std::make_unique<nn::HourglassNet>(small_hourglass_config(), 9));
    model->module().to_device(Device::CUDA);
    nn::GraphForward graph(*model);
    for (int trial = 0; trial < 3; ++trial) {
      Tensor x = randn({trial < 2 ? 2 : 3, 3, 64, 64}, 80 + trial);
      expect_replay(*model, graph, {x.view(), {}}, {x.view(), {}});
    }
    CHECK(graph.captures() == 2);  // batch 2 once, then batch 3
    // Device inputs: a different buffer each call, each one's values are seen.
    for (int trial = 0; trial < 2; ++trial) {
      Tensor x = randn({3, 3, 64, 64}, 90 + trial);
      Tensor xd = x.to(Device::CUDA);
      expect_replay(*model, graph, {x.view(), {}}, {xd.view(), {}});
    }
    CHECK(graph.captures() == 2);
  }
  SUBCASE("hourglass with F16 activations (the casts and 16-bit kernels captured)") {
    auto model = nn::make_model(std::make_unique<nn::HourglassNet>(small_hourglass_config(), 9));
    model->set_activation_dtype(DType::F16);
    model->module().to_device(Device::CUDA);
    nn::GraphForward graph(*model);
    for (int trial = 0; trial < 2; ++trial) {
      Tensor x = randn({2, 3, 64, 64}, 95 + trial);
      expect_replay(*model, graph, {x.view(), {}}, {x.view(), {}});
    }
    CHECK(graph.captures() == 1);
  }
  SUBCASE("lifter, batch 5 and batch 1 (the persistent kernel inside the graph)") {
    auto model = random_lifter_model("progressive", true, 90);
    model->module().to_device(Device::CUDA);
    nn::GraphForward graph(*model);
    for (int trial = 0; trial < 4; ++trial) {
      const int64_t n = trial < 2 ? 5 : 1;
      Tensor x = randn({n, 16, 2}, 100 + trial);
      Tensor a = attributes_for(n, 110 + trial);
      expect_replay(*model, graph, {x.view(), a.view()}, {x.view(), a.view()});
    }
    CHECK(graph.captures() == 2);
  }
  ops::set_cuda_stream(nullptr);
}
