// The op API: validation, then dispatch to the kernel of the tensors' device.
#include "dofpose/ops.h"

#include <atomic>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#ifdef DOFPOSE_WITH_CUDA
#include "kernels/cuda/cuda_kernels.h"
#endif

namespace dofpose::ops {

namespace {

thread_local void* g_stream = nullptr;

// A required float32 tensor on device d with the expected shape.
void need(const char* op, const char* name, const TensorView& t, Device d, const Shape& s) {
  DOFPOSE_CHECK(!t.empty(), op, ": tensor '", name, "' is required but empty");
  check_f32(op, name, t, d);
  check_shape(op, name, t, s);
}

// An optional tensor: checked only when present.
void maybe(const char* op, const char* name, const TensorView& t, Device d, const Shape& s) {
  if (!t.empty()) need(op, name, t, d, s);
}

float* ptr(const TensorView& t) { return t.empty() ? nullptr : static_cast<float*>(t.data); }

// An optional gradient to add to dx as it is written (a skip path's): dx's
// shape, and dx must exist and be another buffer (the CPU adds it after dx is done).
void maybe_dx_add(const char* op, const TensorView& dx_add, const TensorView& dx, Device d,
                  const Shape& s) {
  if (dx_add.empty()) return;
  need(op, "dx_add", dx_add, d, s);
  DOFPOSE_CHECK(!dx.empty(), op, ": dx_add given without dx");
  DOFPOSE_CHECK(dx_add.data != dx.data, op, ": dx_add and dx must not alias");
}

// 16-bit activations (docs/cuda.md, "16-bit activations"): the ops of the
// hourglass's fused inference also take F16 / BF16 tensors. Float32 inside;
// one rounding as the result is stored.
bool float_dtype(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// A required activation tensor: F32, F16 or BF16 on device d with shape s.
void need_act(const char* op, const char* name, const TensorView& t, Device d, const Shape& s) {
  DOFPOSE_CHECK(!t.empty(), op, ": tensor '", name, "' is required but empty");
  DOFPOSE_CHECK(float_dtype(t.dtype), op, ": tensor '", name, "' has dtype ", dtype_name(t.dtype),
                ", expected F32, F16 or BF16");
  DOFPOSE_CHECK(t.device == d, op, ": tensor '", name, "' is on ", device_name(t.device),
                ", expected ", device_name(d));
  DOFPOSE_CHECK(t.is_contiguous(), op, ": tensor '", name, "' ", t.str(), " is not contiguous");
  check_shape(op, name, t, s);
}

void same_dtype(const char* op, const char* name, const TensorView& t, const char* ref_name,
                const TensorView& ref) {
  DOFPOSE_CHECK(t.dtype == ref.dtype, op, ": tensor '", name, "' has dtype ", dtype_name(t.dtype),
                ", expected ", dtype_name(ref.dtype), " (the dtype of '", ref_name, "')");
}

// CPU: float32 working copies for the 16-bit activations of one op, in
// per-thread buffers that only grow (a steady-state forward allocates
// nothing). Slots: 0 and 1 for inputs, 2 for the output (ops do not nest).
std::vector<float>& cpu_scratch(int slot, int64_t n) {
  thread_local std::vector<float> slots[3];
  std::vector<float>& v = slots[slot];
  if (v.size() < size_t(n)) v.resize(size_t(n));
  return v;
}

// CPU: a float32 pointer to an activation's values (a widened copy of a 16-bit one).
struct Widened {
  const float* p = nullptr;
  Widened(const TensorView& t, int slot) {
    if (t.empty()) return;
    if (t.dtype == DType::F32) {
      p = t.f32();
      return;
    }
    float* copy = cpu_scratch(slot, t.numel()).data();
    cpu::cast(t.numel(), t.data, t.dtype, copy, DType::F32);
    p = copy;
  }
};

// CPU: where a kernel writes y's float32 values; store() rounds them into a 16-bit y.
struct Narrowed {
  TensorView y;
  float* p;
  explicit Narrowed(const TensorView& t)
      : y(t), p(t.dtype == DType::F32 ? t.f32() : cpu_scratch(2, t.numel()).data()) {}
  void store() {
    if (y.dtype != DType::F32) cpu::cast(y.numel(), p, DType::F32, y.data, y.dtype);
  }
};

void need_rank(const char* op, const char* name, const TensorView& t, int rank) {
  DOFPOSE_CHECK(!t.empty(), op, ": tensor '", name, "' is required but empty");
  DOFPOSE_CHECK(t.ndim() == rank, op, ": tensor '", name, "' has shape ", t.shape.str(),
                ", expected ", rank, " dims");
}

[[noreturn, maybe_unused]] void no_cuda_kernel(const char* op) {
  fail(op, ": no CUDA kernel yet; run this op on CPU tensors");
}

// Runs the CPU kernel, or the CUDA one where it exists.
#ifdef DOFPOSE_WITH_CUDA
#define DISPATCH(op, dev, cpu_call, cuda_call) \
  do {                                         \
    if ((dev) == Device::CPU) {                \
      cpu_call;                                \
    } else {                                   \
      cuda_call;                               \
    }                                          \
  } while (0)
#else
#define DISPATCH(op, dev, cpu_call, cuda_call) \
  do {                                         \
    if ((dev) == Device::CPU) {                \
      cpu_call;                                \
    } else {                                   \
      no_cuda_kernel(op);                      \
    }                                          \
  } while (0)
#endif


Shape nchw(const TensorView& t) { return t.shape; }

BatchNormShape bn_shape(const char* op, const TensorView& x) {
  DOFPOSE_CHECK(!x.empty() && (x.ndim() == 2 || x.ndim() == 4), op, ": tensor 'x' has shape ",
                x.shape.str(), ", expected [N,C] or [N,C,H,W]");
  BatchNormShape s;
  s.N = int(x.dim(0));
  s.C = int(x.dim(1));
  s.HW = x.ndim() == 4 ? int(x.dim(2) * x.dim(3)) : 1;
  return s;
}

}  // namespace

void set_cuda_stream(void* stream) { g_stream = stream; }
void* cuda_stream() { return g_stream; }

// ---- conv2d
Conv2dShape conv2d_shape(const TensorView& x, const TensorView& w, ConvParams p) {
  const char* op = "conv2d";
  need_rank(op, "x", x, 4);
  need_rank(op, "weight", w, 4);
  DOFPOSE_CHECK(p.groups >= 1 && p.stride >= 1 && p.pad >= 0, op, ": invalid stride ", p.stride,
                " / pad ", p.pad, " / groups ", p.groups);
  Conv2dShape s;
  s.N = int(x.dim(0)); s.C = int(x.dim(1)); s.H = int(x.dim(2)); s.W = int(x.dim(3));
  s.K = int(w.dim(0)); s.R = int(w.dim(2)); s.S = int(w.dim(3));
  s.stride = p.stride; s.pad = p.pad; s.groups = p.groups;
  DOFPOSE_CHECK(s.C % p.groups == 0 && s.K % p.groups == 0, op, ": groups ", p.groups,
                " must divide input channels ", s.C, " and output channels ", s.K);
  DOFPOSE_CHECK(w.dim(1) == s.C / p.groups, op, ": tensor 'weight' has shape ", w.shape.str(),
                ", expected [", s.K, ",", s.C / p.groups, ",R,S] for input ", x.shape.str(),
                " and groups ", p.groups);
  DOFPOSE_CHECK(s.H + 2 * s.pad >= s.R && s.W + 2 * s.pad >= s.S, op, ": kernel ", s.R, "x", s.S,
                " is larger than the padded input of ", x.shape.str());
  return s;
}

Shape conv2d_output_shape(const TensorView& x, const TensorView& w, ConvParams p) {
  Conv2dShape s = conv2d_shape(x, w, p);
  return Shape{s.N, s.K, s.P(), s.Q()};
}

void conv2d_forward(const TensorView& x, const TensorView& w, const TensorView& bias,
                    const TensorView& y, ConvParams p) {
  const char* op = "conv2d_forward";
  Conv2dShape s = conv2d_shape(x, w, p);
  Device d = x.device;
  need_act(op, "x", x, d, nchw(x));
  need(op, "weight", w, d, w.shape);
  maybe(op, "bias", bias, d, Shape{s.K});
  need_act(op, "y", y, d, Shape{s.N, s.K, s.P(), s.Q()});
  if (x.dtype != DType::F32 || y.dtype != DType::F32) {  // 16-bit activations: the fused conv's path
    DOFPOSE_CHECK(s.groups == 1, op, ": 16-bit activations need groups == 1, got ", s.groups);
    conv2d_fused_forward(x, w, bias, y, p, ConvFusionRef{});
    return;
  }
  DISPATCH(op, d, cpu::conv2d_forward(s, x.f32(), w.f32(), ptr(bias), y.f32()),
           cuda_kernels::conv2d_forward(s, x.f32(), w.f32(), ptr(bias), y.f32(), g_stream));
}

namespace {
// Checks one BatchNorm of a fused conv and returns its raw pointers.
BatchNormPtrs bn_ptrs(const char* op, const char* which, const BatchNormRef& bn, Device d,
                      int64_t channels) {
  BatchNormPtrs p;
  if (bn.mean.empty()) {
    DOFPOSE_CHECK(bn.var.empty() && bn.gamma.empty() && bn.beta.empty(), op, ": ", which,
                  " has no running_mean but other tensors");
    return p;
  }
  const Shape c{channels};
  need(op, concat(which, ".running_mean").c_str(), bn.mean, d, c);
  need(op, concat(which, ".running_var").c_str(), bn.var, d, c);
  maybe(op, concat(which, ".weight").c_str(), bn.gamma, d, c);
  maybe(op, concat(which, ".bias").c_str(), bn.beta, d, c);
  p.mean = ptr(bn.mean);
  p.var = ptr(bn.var);
  p.gamma = ptr(bn.gamma);
  p.beta = ptr(bn.beta);
  p.eps = bn.eps;
  return p;
}
}  // namespace

namespace {
std::atomic<CpuConvAlgorithm> g_cpu_conv_algorithm{CpuConvAlgorithm::Winograd};
}  // namespace

void set_cpu_conv_algorithm(CpuConvAlgorithm a) { g_cpu_conv_algorithm = a; }
CpuConvAlgorithm cpu_conv_algorithm() { return g_cpu_conv_algorithm; }
const char* cpu_conv_algorithm_name(CpuConvAlgorithm a) {
  return a == CpuConvAlgorithm::Winograd ? "winograd" : "direct";
}

void conv2d_fused_forward(const TensorView& x, const TensorView& w, const TensorView& bias,
                          const TensorView& y, ConvParams p, const ConvFusionRef& f) {
  const char* op = "conv2d_fused_forward";
  Conv2dShape s = conv2d_shape(x, w, p);
  DOFPOSE_CHECK(s.groups == 1, op, ": groups must be 1, got ", s.groups);
  Device d = x.device;
  need_act(op, "x", x, d, nchw(x));
  need(op, "weight", w, d, w.shape);
  maybe(op, "bias", bias, d, Shape{s.K});
  const Shape ys{s.N, s.K, s.P(), s.Q()};
  need_act(op, "y", y, d, ys);
  if (!f.residual.empty()) {
    need_act(op, "residual", f.residual, d, ys);
    same_dtype(op, "residual", f.residual, "y", y);
  }
  DOFPOSE_CHECK(x.data != y.data, op, ": x and y must not alias");
  ConvFusion k;
  k.in_bn = bn_ptrs(op, "in_bn", f.in_bn, d, s.C);
  k.out_bn = bn_ptrs(op, "out_bn", f.out_bn, d, s.K);
  k.out_relu = f.out_relu;
  k.residual = ptr(f.residual);
  k.winograd = cpu_conv_algorithm() == CpuConvAlgorithm::Winograd;
  if (x.dtype == DType::F32 && y.dtype == DType::F32) {
    DISPATCH(op, d, cpu::conv2d_fused_forward(s, x.f32(), w.f32(), ptr(bias), k, y.f32()),
             cuda_kernels::conv2d_fused_forward(s, x.f32(), w.f32(), ptr(bias), k, y.f32(),
                                                g_stream));
    return;
  }
  DOFPOSE_CHECK(x.dtype == DType::F32 || y.dtype == DType::F32 || x.dtype == y.dtype, op,
                ": x is ", dtype_name(x.dtype), " and y ", dtype_name(y.dtype),
                "; one 16-bit type per convolution (F16 or BF16, the other tensor F32 or the same)");
  const auto cpu16 = [&] {
    const Widened xw(x, 0), rw(f.residual, 1);
    Narrowed yn(y);
    k.residual = rw.p;
    cpu::conv2d_fused_forward(s, xw.p, w.f32(), ptr(bias), k, yn.p);
    yn.store();
  };
  DISPATCH(op, d, cpu16(),
           cuda_kernels::conv2d_fused_forward16(s, x.data, x.dtype, w.f32(), ptr(bias), k, y.data,
                                                y.dtype, g_stream));
}

void conv2d_backward(const TensorView& x, const TensorView& w, const TensorView& dy,
                     const TensorView& dx, const TensorView& dw, const TensorView& dbias,
                     ConvParams p) {
  const char* op = "conv2d_backward";
  Conv2dShape s = conv2d_shape(x, w, p);
  Device d = x.device;
  need(op, "x", x, d, nchw(x));
  need(op, "weight", w, d, w.shape);
  need(op, "dy", dy, d, Shape{s.N, s.K, s.P(), s.Q()});
  maybe(op, "dx", dx, d, x.shape);
  maybe(op, "dweight", dw, d, w.shape);
  maybe(op, "dbias", dbias, d, Shape{s.K});
  DISPATCH(op, d, cpu::conv2d_backward(s, x.f32(), w.f32(), dy.f32(), ptr(dx), ptr(dw), ptr(dbias)),
           cuda_kernels::conv2d_backward(s, x.f32(), w.f32(), dy.f32(), ptr(dx), ptr(dw),
                                         ptr(dbias), g_stream));
}

bool conv2d_forward_fast(const TensorView& x, const TensorView& w, const TensorView& bias,
                         const TensorView& y, ConvParams p) {
  const Conv2dShape s = conv2d_shape(x, w, p);
  const bool winograd = x.device == Device::CPU && x.dtype == DType::F32 && y.dtype == DType::F32 &&
                        cpu_conv_algorithm() == CpuConvAlgorithm::Winograd &&
                        cpu::conv2d_winograd_worthwhile(s);
  if (!winograd) {
    conv2d_forward(x, w, bias, y, p);
    return false;
  }
  const char* op = "conv2d_forward_fast";
  need(op, "x", x, Device::CPU, nchw(x));
  need(op, "weight", w, Device::CPU, w.shape);
  maybe(op, "bias", bias, Device::CPU, Shape{s.K});
  need(op, "y", y, Device::CPU, Shape{s.N, s.K, s.P(), s.Q()});
  DOFPOSE_CHECK(x.data != y.data, op, ": x and y must not alias");
  cpu::conv2d_winograd_forward(s, x.f32(), w.f32(), ptr(bias), y.f32());
  return true;
}

void conv2d_backward_fast(const TensorView& x, const TensorView& w, const TensorView& dy,
                          const TensorView& dx, const TensorView& dw, const TensorView& dbias,
                          ConvParams p, bool winograd) {
  if (!winograd) {
    conv2d_backward(x, w, dy, dx, dw, dbias, p);
    return;
  }
  const char* op = "conv2d_backward_fast";
  const Conv2dShape s = conv2d_shape(x, w, p);
  DOFPOSE_CHECK(x.device == Device::CPU && cpu::conv2d_winograd_applies(s), op,
                ": winograd = true needs a CPU 3x3 stride-1 pad-1 convolution (conv2d_forward_fast's answer)");
  conv2d_backward(x, w, dy, TensorView(), TensorView(), dbias, p);  // checks x, w, dy; dbias
  maybe(op, "dx", dx, Device::CPU, x.shape);
  maybe(op, "dw", dw, Device::CPU, w.shape);
  if (!dw.empty()) cpu::conv2d_winograd_backward_weights(s, x.f32(), dy.f32(), dw.f32());
  if (!dx.empty()) cpu::conv2d_winograd_backward_data(s, w.f32(), dy.f32(), dx.f32());
}

// ---- linear
namespace {
struct LinearDims {
  int N, in, out;
  Device d;
};
// x [N,in] and weight [out,in] on one device: the operands every linear op shares.
LinearDims linear_dims(const char* op, const TensorView& x, const TensorView& w) {
  need_rank(op, "x", x, 2);
  need_rank(op, "weight", w, 2);
  const LinearDims l{int(x.dim(0)), int(x.dim(1)), int(w.dim(0)), x.device};
  need(op, "x", x, l.d, x.shape);
  need(op, "weight", w, l.d, Shape{l.out, l.in});
  return l;
}
}  // namespace

void linear_forward(const TensorView& x, const TensorView& w, const TensorView& b,
                    const TensorView& y) {
  const char* op = "linear_forward";
  const auto [N, in, out, d] = linear_dims(op, x, w);
  maybe(op, "bias", b, d, Shape{out});
  need(op, "y", y, d, Shape{N, out});
  DISPATCH(op, d, cpu::linear_forward(N, in, out, x.f32(), w.f32(), ptr(b), y.f32()),
           cuda_kernels::linear_forward(N, in, out, x.f32(), w.f32(), ptr(b), y.f32(), g_stream));
}

void linear_fused_forward(const TensorView& x, const TensorView& w, const TensorView& b,
                          const TensorView& y, const LinearFusionRef& f) {
  const char* op = "linear_fused_forward";
  const auto [N, in, out, d] = linear_dims(op, x, w);
  maybe(op, "bias", b, d, Shape{out});
  need(op, "y", y, d, Shape{N, out});
  maybe(op, "residual", f.residual, d, Shape{N, out});
  DOFPOSE_CHECK(x.data != y.data, op, ": x and y must not alias");
  LinearFusion k;
  k.bias = ptr(b);
  k.bn = bn_ptrs(op, "bn", f.bn, d, out);
  k.relu = f.relu;
  k.residual = ptr(f.residual);
  DISPATCH(op, d, cpu::linear_fused_forward(N, in, out, x.f32(), w.f32(), k, y.f32()),
           cuda_kernels::linear_fused_forward(N, in, out, x.f32(), w.f32(), k, y.f32(), g_stream));
}

void linear_backward(const TensorView& x, const TensorView& w, const TensorView& dy,
                     const TensorView& dx, const TensorView& dw, const TensorView& db,
                     const TensorView& dx_add) {
  const char* op = "linear_backward";
  const auto [N, in, out, d] = linear_dims(op, x, w);
  need(op, "dy", dy, d, Shape{N, out});
  maybe(op, "dx", dx, d, x.shape);
  maybe(op, "dweight", dw, d, w.shape);
  maybe(op, "dbias", db, d, Shape{out});
  maybe_dx_add(op, dx_add, dx, d, x.shape);
  DISPATCH(op, d,
           cpu::linear_backward(N, in, out, x.f32(), w.f32(), dy.f32(), ptr(dx), ptr(dw), ptr(db),
                                ptr(dx_add)),
           cuda_kernels::linear_backward(N, in, out, x.f32(), w.f32(), dy.f32(), ptr(dx), ptr(dw),
                                         ptr(db), ptr(dx_add), g_stream));
}

// ---- batchnorm
namespace {

// A dropout-style mask: U8, the shape and device of `like`.
void need_mask(const char* op, const TensorView& mask, const TensorView& like) {
  DOFPOSE_CHECK(mask.dtype == DType::U8 && mask.shape == like.shape && mask.device == like.device,
                op, ": tensor 'mask' is ", mask.str(), ", expected U8", like.shape.str(), " on ",
                device_name(like.device));
}

// The checks of the training BatchNorm forward ops (plain and fused).
BatchNormShape check_bn_train_forward(const char* op, const TensorView& x,
                                      const TensorView& gamma, const TensorView& beta,
                                      const TensorView& running_mean,
                                      const TensorView& running_var, const TensorView& y,
                                      const TensorView& save_mean,
                                      const TensorView& save_invstd) {
  const BatchNormShape s = bn_shape(op, x);
  const Device d = x.device;
  const Shape c{s.C};
  DOFPOSE_CHECK(int64_t(s.N) * s.HW > 1, op, ": batch statistics need more than one value per "
                "channel, got x ", x.shape.str());
  need(op, "gamma", gamma, d, c);
  need(op, "beta", beta, d, c);
  maybe(op, "running_mean", running_mean, d, c);
  maybe(op, "running_var", running_var, d, c);
  need(op, "y", y, d, x.shape);
  need(op, "save_mean", save_mean, d, c);
  need(op, "save_invstd", save_invstd, d, c);
  return s;
}

// The checks of the BatchNorm backward ops: training (plain and fused; the
// statistics are save_mean / save_invstd) and inference (running_mean / running_var).
struct BnStats {
  const char *mean_name, *var_name;  // var: save_invstd in training
  const TensorView &mean, &var;
};
BatchNormShape check_bn_backward(const char* op, const TensorView& x, const TensorView& gamma,
                                 const BnStats& stats, const TensorView& dy, const TensorView& dx,
                                 const TensorView& dgamma, const TensorView& dbeta) {
  const BatchNormShape s = bn_shape(op, x);
  const Device d = x.device;
  const Shape c{s.C};
  need(op, "gamma", gamma, d, c);
  need(op, stats.mean_name, stats.mean, d, c);
  need(op, stats.var_name, stats.var, d, c);
  need(op, "dy", dy, d, x.shape);
  maybe(op, "dx", dx, d, x.shape);
  maybe(op, "dgamma", dgamma, d, c);
  maybe(op, "dbeta", dbeta, d, c);
  return s;
}

}  // namespace

void batchnorm_forward_train(const TensorView& x, const TensorView& gamma, const TensorView& beta,
                             const TensorView& running_mean, const TensorView& running_var,
                             const TensorView& y, const TensorView& save_mean,
                             const TensorView& save_invstd, BatchNormParams p) {
  const char* op = "batchnorm_forward_train";
  const BatchNormShape s = check_bn_train_forward(op, x, gamma, beta, running_mean, running_var,
                                                  y, save_mean, save_invstd);
  const Device d = x.device;
  DISPATCH(op, d,
           cpu::batchnorm_forward_train(s, x.f32(), gamma.f32(), beta.f32(), ptr(running_mean),
                                        ptr(running_var), p.momentum, p.eps, y.f32(),
                                        save_mean.f32(), save_invstd.f32()),
           cuda_kernels::batchnorm_forward_train(s, x.f32(), gamma.f32(), beta.f32(),
                                                 ptr(running_mean), ptr(running_var), p.momentum,
                                                 p.eps, y.f32(), save_mean.f32(),
                                                 save_invstd.f32(), g_stream));
}

void batchnorm_forward_infer(const TensorView& x, const TensorView& gamma, const TensorView& beta,
                             const TensorView& running_mean, const TensorView& running_var,
                             const TensorView& y, BatchNormParams p) {
  const char* op = "batchnorm_forward_infer";
  BatchNormShape s = bn_shape(op, x);
  Device d = x.device;
  Shape c{s.C};
  need(op, "gamma", gamma, d, c);
  need(op, "beta", beta, d, c);
  need(op, "running_mean", running_mean, d, c);
  need(op, "running_var", running_var, d, c);
  need(op, "y", y, d, x.shape);
  DISPATCH(op, d,
           cpu::batchnorm_forward_infer(s, x.f32(), gamma.f32(), beta.f32(), running_mean.f32(),
                                        running_var.f32(), p.eps, y.f32()),
           cuda_kernels::batchnorm_forward_infer(s, x.f32(), gamma.f32(), beta.f32(),
                                                 running_mean.f32(), running_var.f32(), p.eps,
                                                 y.f32(), g_stream));
}

void batchnorm_backward_train(const TensorView& x, const TensorView& gamma,
                              const TensorView& save_mean, const TensorView& save_invstd,
                              const TensorView& dy, const TensorView& dx, const TensorView& dgamma,
                              const TensorView& dbeta) {
  const char* op = "batchnorm_backward_train";
  const BatchNormShape s =
      check_bn_backward(op, x, gamma, {"save_mean", "save_invstd", save_mean, save_invstd}, dy, dx,
                        dgamma, dbeta);
  const Device d = x.device;
  DISPATCH(op, d,
           cpu::batchnorm_backward_train(s, x.f32(), gamma.f32(), save_mean.f32(),
                                         save_invstd.f32(), dy.f32(), ptr(dx), ptr(dgamma),
                                         ptr(dbeta)),
           cuda_kernels::batchnorm_backward_train(s, x.f32(), gamma.f32(), save_mean.f32(),
                                                  save_invstd.f32(), dy.f32(), ptr(dx),
                                                  ptr(dgamma), ptr(dbeta), g_stream));
}

void batchnorm_relu_dropout_forward_train(const TensorView& x, const TensorView& gamma,
                                          const TensorView& beta, const TensorView& running_mean,
                                          const TensorView& running_var, const TensorView& y,
                                          const TensorView& save_mean,
                                          const TensorView& save_invstd, const TensorView& mask,
                                          float p, uint64_t seed, BatchNormParams bp,
                                          const TensorView& residual) {
  const char* op = "batchnorm_relu_dropout_forward_train";
  const BatchNormShape s = check_bn_train_forward(op, x, gamma, beta, running_mean, running_var,
                                                  y, save_mean, save_invstd);
  const Device d = x.device;
  need_mask(op, mask, x);
  maybe(op, "residual", residual, d, x.shape);
  DISPATCH(op, d,
           cpu::batchnorm_relu_dropout_forward_train(
               s, x.f32(), gamma.f32(), beta.f32(), ptr(running_mean), ptr(running_var),
               bp.momentum, bp.eps, p, seed, y.f32(), save_mean.f32(), save_invstd.f32(),
               mask.u8(), ptr(residual)),
           cuda_kernels::batchnorm_relu_dropout_forward_train(
               s, x.f32(), gamma.f32(), beta.f32(), ptr(running_mean), ptr(running_var),
               bp.momentum, bp.eps, p, seed, y.f32(), save_mean.f32(), save_invstd.f32(),
               mask.u8(), ptr(residual), g_stream));
}

void batchnorm_relu_dropout_backward_train(const TensorView& x, const TensorView& gamma,
                                           const TensorView& save_mean,
                                           const TensorView& save_invstd, const TensorView& mask,
                                           float p, const TensorView& dy, const TensorView& dx,
                                           const TensorView& dgamma, const TensorView& dbeta,
                                           const TensorView& dx_add) {
  const char* op = "batchnorm_relu_dropout_backward_train";
  const BatchNormShape s =
      check_bn_backward(op, x, gamma, {"save_mean", "save_invstd", save_mean, save_invstd}, dy, dx,
                        dgamma, dbeta);
  const Device d = x.device;
  need_mask(op, mask, x);
  maybe_dx_add(op, dx_add, dx, d, x.shape);
  DISPATCH(op, d,
           cpu::batchnorm_relu_dropout_backward_train(s, x.f32(), gamma.f32(), save_mean.f32(),
                                                      save_invstd.f32(), mask.u8(), p, dy.f32(),
                                                      ptr(dx), ptr(dgamma), ptr(dbeta),
                                                      ptr(dx_add)),
           cuda_kernels::batchnorm_relu_dropout_backward_train(
               s, x.f32(), gamma.f32(), save_mean.f32(), save_invstd.f32(), mask.u8(), p,
               dy.f32(), ptr(dx), ptr(dgamma), ptr(dbeta), ptr(dx_add), g_stream));
}

void batchnorm_backward_infer(const TensorView& x, const TensorView& gamma,
                              const TensorView& running_mean, const TensorView& running_var,
                              const TensorView& dy, const TensorView& dx, const TensorView& dgamma,
                              const TensorView& dbeta, BatchNormParams p) {
  const char* op = "batchnorm_backward_infer";
  const BatchNormShape s = check_bn_backward(
      op, x, gamma, {"running_mean", "running_var", running_mean, running_var}, dy, dx, dgamma,
      dbeta);
  const Device d = x.device;
  DISPATCH(op, d,
           cpu::batchnorm_backward_infer(s, x.f32(), gamma.f32(), running_mean.f32(),
                                         running_var.f32(), p.eps, dy.f32(), ptr(dx),
                                         ptr(dgamma), ptr(dbeta)),
           cuda_kernels::batchnorm_backward_infer(s, x.f32(), gamma.f32(), running_mean.f32(),
                                                  running_var.f32(), p.eps, dy.f32(), ptr(dx),
                                                  ptr(dgamma), ptr(dbeta), g_stream));
}

void batchnorm_fold(const TensorView& weight, const TensorView& bias, const TensorView& gamma,
                    const TensorView& beta, const TensorView& running_mean,
                    const TensorView& running_var, BatchNormParams p) {
  const char* op = "batchnorm_fold";
  DOFPOSE_CHECK(!weight.empty() && weight.ndim() >= 2, op, ": tensor 'weight' has shape ",
                weight.shape.str(), ", expected [K, ...]");
  Device d = weight.device;
  int K = int(weight.dim(0));
  Shape c{K};
  need(op, "weight", weight, d, weight.shape);
  need(op, "bias", bias, d, c);
  need(op, "gamma", gamma, d, c);
  need(op, "beta", beta, d, c);
  need(op, "running_mean", running_mean, d, c);
  need(op, "running_var", running_var, d, c);
  DISPATCH(op, d,
           cpu::batchnorm_fold(K, weight.numel() / K, weight.f32(), bias.f32(), gamma.f32(),
                               beta.f32(), running_mean.f32(), running_var.f32(), p.eps),
           cuda_kernels::batchnorm_fold(K, weight.numel() / K, weight.f32(), bias.f32(),
                                        gamma.f32(), beta.f32(), running_mean.f32(),
                                        running_var.f32(), p.eps, g_stream));
}

// ---- activations and element-wise
void relu_forward(const TensorView& x, const TensorView& y) {
  const char* op = "relu_forward";
  Device d = x.device;
  need(op, "x", x, d, x.shape);
  need(op, "y", y, d, x.shape);
  DISPATCH(op, d, cpu::relu_forward(x.numel(), x.f32(), y.f32()),
           cuda_kernels::relu_forward(x.numel(), x.f32(), y.f32(), g_stream));
}

void relu_backward(const TensorView& x, const TensorView& dy, const TensorView& dx) {
  const char* op = "relu_backward";
  Device d = x.device;
  need(op, "x", x, d, x.shape);
  need(op, "dy", dy, d, x.shape);
  need(op, "dx", dx, d, x.shape);
  DISPATCH(op, d, cpu::relu_backward(x.numel(), x.f32(), dy.f32(), dx.f32()),
           cuda_kernels::relu_backward(x.numel(), x.f32(), dy.f32(), dx.f32(), g_stream));
}

void relu6_forward(const TensorView& x, const TensorView& y) {
  const char* op = "relu6_forward";
  Device d = x.device;
  need(op, "x", x, d, x.shape);
  need(op, "y", y, d, x.shape);
  DISPATCH(op, d, cpu::relu6_forward(x.numel(), x.f32(), y.f32()),
           cuda_kernels::relu6_forward(x.numel(), x.f32(), y.f32(), g_stream));
}

void relu6_backward(const TensorView& x, const TensorView& dy, const TensorView& dx) {
  const char* op = "relu6_backward";
  Device d = x.device;
  need(op, "x", x, d, x.shape);
  need(op, "dy", dy, d, x.shape);
  need(op, "dx", dx, d, x.shape);
  DISPATCH(op, d, cpu::relu6_backward(x.numel(), x.f32(), dy.f32(), dx.f32()),
           cuda_kernels::relu6_backward(x.numel(), x.f32(), dy.f32(), dx.f32(), g_stream));
}

void add_forward(const TensorView& a, const TensorView& b, const TensorView& y) {
  const char* op = "add_forward";
  Device d = a.device;
  need(op, "a", a, d, a.shape);
  need(op, "b", b, d, a.shape);
  need(op, "y", y, d, a.shape);
  DISPATCH(op, d, cpu::add_forward(a.numel(), a.f32(), b.f32(), y.f32()),
           cuda_kernels::add_forward(a.numel(), a.f32(), b.f32(), y.f32(), g_stream));
}

void accumulate(const TensorView& x, const TensorView& y) {
  const char* op = "accumulate";
  Device d = x.device;
  need(op, "x", x, d, x.shape);
  need(op, "y", y, d, x.shape);
  DISPATCH(op, d, cpu::accumulate(x.numel(), x.f32(), y.f32()),
           cuda_kernels::accumulate(x.numel(), x.f32(), y.f32(), g_stream));
}

void cast(const TensorView& x, const TensorView& y) {
  const char* op = "cast";
  Device d = x.device;
  need_act(op, "x", x, d, x.shape);
  need_act(op, "y", y, d, x.shape);
  DOFPOSE_CHECK(x.data != y.data || x.dtype == y.dtype, op, ": x and y must not alias");
  DISPATCH(op, d, cpu::cast(x.numel(), x.data, x.dtype, y.data, y.dtype),
           cuda_kernels::cast(x.numel(), x.data, x.dtype, y.data, y.dtype, g_stream));
}

void scale(const TensorView& x, float alpha, const TensorView& y) {
  const char* op = "scale";
  Device d = x.device;
  need(op, "x", x, d, x.shape);
  need(op, "y", y, d, x.shape);
  DISPATCH(op, d, cpu::scale(x.numel(), alpha, x.f32(), y.f32()),
           cuda_kernels::scale(x.numel(), alpha, x.f32(), y.f32(), g_stream));
}

void copy_columns(const TensorView& src, int64_t src_col, const TensorView& dst, int64_t dst_col,
                  int64_t width, bool accumulate) {
  const char* op = "copy_columns";
  need_rank(op, "src", src, 2);
  need_rank(op, "dst", dst, 2);
  Device d = src.device;
  need(op, "src", src, d, src.shape);
  need(op, "dst", dst, d, Shape{src.dim(0), dst.dim(1)});
  DOFPOSE_CHECK(width >= 0 && src_col >= 0 && dst_col >= 0 && src_col + width <= src.dim(1) &&
                    dst_col + width <= dst.dim(1),
                op, ": columns [", src_col, ",", src_col + width, ") of ", src.str(),
                " -> [", dst_col, ",", dst_col + width, ") of ", dst.str(), " are out of range");
  const int rows = int(src.dim(0)), sc = int(src.dim(1)), dc = int(dst.dim(1));
  DISPATCH(op, d,
           cpu::copy_columns(rows, int(width), src.f32(), sc, int(src_col), dst.f32(), dc,
                             int(dst_col), accumulate),
           cuda_kernels::copy_columns(rows, int(width), src.f32(), sc, int(src_col), dst.f32(), dc,
                                      int(dst_col), accumulate, g_stream));
}

void affine_columns(const TensorView& x, const TensorView& mul, const TensorView& add,
                    const TensorView& y) {
  const char* op = "affine_columns";
  need_rank(op, "x", x, 2);
  Device d = x.device;
  need(op, "x", x, d, x.shape);
  need(op, "mul", mul, d, Shape{x.dim(1)});
  need(op, "add", add, d, Shape{x.dim(1)});
  need(op, "y", y, d, x.shape);
  const int rows = int(x.dim(0)), cols = int(x.dim(1));
  DISPATCH(op, d, cpu::affine_columns(rows, cols, x.f32(), mul.f32(), add.f32(), y.f32()),
           cuda_kernels::affine_columns(rows, cols, x.f32(), mul.f32(), add.f32(), y.f32(),
                                        g_stream));
}

void standardize_columns(const TensorView& x, const TensorView& mean, const TensorView& std,
                         const TensorView& y) {
  const char* op = "standardize_columns";
  need_rank(op, "x", x, 2);
  need_rank(op, "mean", mean, 1);
  Device d = x.device;
  need(op, "x", x, d, x.shape);
  const int64_t count = mean.dim(0);
  DOFPOSE_CHECK(count <= x.dim(1), op, ": tensor 'mean' has ", count, " columns, more than x's ",
                x.dim(1));
  need(op, "mean", mean, d, Shape{count});
  need(op, "std", std, d, Shape{count});
  need(op, "y", y, d, x.shape);
  const int rows = int(x.dim(0)), cols = int(x.dim(1));
  DISPATCH(op, d,
           cpu::standardize_columns(rows, cols, int(count), x.f32(), mean.f32(), std.f32(), y.f32()),
           cuda_kernels::standardize_columns(rows, cols, int(count), x.f32(), mean.f32(), std.f32(),
                                             y.f32(), g_stream));
}

// ---- pooling and resizing
void maxpool2x2_forward(const TensorView& x, const TensorView& y) {
  const char* op = "maxpool2x2_forward";
  need_rank(op, "x", x, 4);
  Device d = x.device;
  need_act(op, "x", x, d, x.shape);
  need_act(op, "y", y, d, Shape{x.dim(0), x.dim(1), x.dim(2) / 2, x.dim(3) / 2});
  same_dtype(op, "y", y, "x", x);
  const int N = int(x.dim(0)), C = int(x.dim(1)), H = int(x.dim(2)), W = int(x.dim(3));
  if (x.dtype != DType::F32) {
    const auto cpu16 = [&] {
      const Widened xw(x, 0);
      Narrowed yn(y);
      cpu::maxpool2x2_forward(N, C, H, W, xw.p, yn.p);
      yn.store();
    };
    DISPATCH(op, d, cpu16(),
             cuda_kernels::maxpool2x2_forward16(N, C, H, W, x.dtype, x.data, y.data, g_stream));
    return;
  }
  DISPATCH(op, d, cpu::maxpool2x2_forward(N, C, H, W, x.f32(), y.f32()),
           cuda_kernels::maxpool2x2_forward(N, C, H, W, x.f32(), y.f32(), g_stream));
}

void maxpool2x2_backward(const TensorView& x, const TensorView& dy, const TensorView& dx,
                         const TensorView& dx_add) {
  const char* op = "maxpool2x2_backward";
  need_rank(op, "x", x, 4);
  Device d = x.device;
  need(op, "x", x, d, x.shape);
  need(op, "dy", dy, d, Shape{x.dim(0), x.dim(1), x.dim(2) / 2, x.dim(3) / 2});
  need(op, "dx", dx, d, x.shape);
  maybe_dx_add(op, dx_add, dx, d, x.shape);
  const int N = int(x.dim(0)), C = int(x.dim(1)), H = int(x.dim(2)), W = int(x.dim(3));
  DISPATCH(op, d, cpu::maxpool2x2_backward(N, C, H, W, x.f32(), dy.f32(), dx.f32(), ptr(dx_add)),
           cuda_kernels::maxpool2x2_backward(N, C, H, W, x.f32(), dy.f32(), dx.f32(),
                                             ptr(dx_add), g_stream));
}

void upsample_nearest2x_forward(const TensorView& x, const TensorView& y) {
  const char* op = "upsample_nearest2x_forward";
  need_rank(op, "x", x, 4);
  Device d = x.device;
  need(op, "x", x, d, x.shape);
  need(op, "y", y, d, Shape{x.dim(0), x.dim(1), 2 * x.dim(2), 2 * x.dim(3)});
  const int N = int(x.dim(0)), C = int(x.dim(1)), H = int(x.dim(2)), W = int(x.dim(3));
  DISPATCH(op, d, cpu::upsample_nearest2x_forward(N, C, H, W, x.f32(), y.f32()),
           cuda_kernels::upsample_nearest2x_forward(N, C, H, W, x.f32(), y.f32(), g_stream));
}

void upsample_nearest2x_backward(const TensorView& dy, const TensorView& dx) {
  const char* op = "upsample_nearest2x_backward";
  need_rank(op, "dx", dx, 4);
  Device d = dx.device;
  need(op, "dx", dx, d, dx.shape);
  need(op, "dy", dy, d, Shape{dx.dim(0), dx.dim(1), 2 * dx.dim(2), 2 * dx.dim(3)});
  const int N = int(dx.dim(0)), C = int(dx.dim(1)), H = int(dx.dim(2)), W = int(dx.dim(3));
  DISPATCH(op, d, cpu::upsample_nearest2x_backward(N, C, H, W, dy.f32(), dx.f32()),
           cuda_kernels::upsample_nearest2x_backward(N, C, H, W, dy.f32(), dx.f32(), g_stream));
}

void upsample_add_forward(const TensorView& a, const TensorView& low, const TensorView& y) {
  const char* op = "upsample_add_forward";
  need_rank(op, "low", low, 4);
  Device d = low.device;
  const Shape up{low.dim(0), low.dim(1), 2 * low.dim(2), 2 * low.dim(3)};
  need_act(op, "low", low, d, low.shape);
  need_act(op, "a", a, d, up);
  need_act(op, "y", y, d, up);
  same_dtype(op, "low", low, "a", a);
  same_dtype(op, "y", y, "a", a);
  const int N = int(low.dim(0)), C = int(low.dim(1)), H = int(low.dim(2)), W = int(low.dim(3));
  if (a.dtype != DType::F32) {
    const auto cpu16 = [&] {
      const Widened aw(a, 0), lw(low, 1);
      Narrowed yn(y);
      cpu::upsample_add_forward(N, C, H, W, aw.p, lw.p, yn.p);
      yn.store();
    };
    DISPATCH(op, d, cpu16(),
             cuda_kernels::upsample_add_forward16(N, C, H, W, a.dtype, a.data, low.data, y.data,
                                                  g_stream));
    return;
  }
  DISPATCH(op, d, cpu::upsample_add_forward(N, C, H, W, a.f32(), low.f32(), y.f32()),
           cuda_kernels::upsample_add_forward(N, C, H, W, a.f32(), low.f32(), y.f32(), g_stream));
}

void bilinear_forward(const TensorView& x, const TensorView& y, ResizeMode mode) {
  const char* op = "bilinear_forward";
  need_rank(op, "x", x, 4);
  need_rank(op, "y", y, 4);
  Device d = x.device;
  need(op, "x", x, d, x.shape);
  need(op, "y", y, d, Shape{x.dim(0), x.dim(1), y.dim(2), y.dim(3)});
  DOFPOSE_CHECK(x.dim(2) > 0 && x.dim(3) > 0 && y.dim(2) > 0 && y.dim(3) > 0, op,
                ": empty spatial size in x ", x.shape.str(), " or y ", y.shape.str());
  const int N = int(x.dim(0)), C = int(x.dim(1)), H = int(x.dim(2)), W = int(x.dim(3));
  const int OH = int(y.dim(2)), OW = int(y.dim(3));
  DISPATCH(op, d, cpu::bilinear_forward(N, C, H, W, OH, OW, mode, x.f32(), y.f32()),
           cuda_kernels::bilinear_forward(N, C, H, W, OH, OW, mode, x.f32(), y.f32(), g_stream));
}

void bilinear_backward(const TensorView& dy, const TensorView& dx, ResizeMode mode) {
  const char* op = "bilinear_backward";
  need_rank(op, "dx", dx, 4);
  need_rank(op, "dy", dy, 4);
  Device d = dx.device;
  need(op, "dx", dx, d, dx.shape);
  need(op, "dy", dy, d, Shape{dx.dim(0), dx.dim(1), dy.dim(2), dy.dim(3)});
  const int N = int(dx.dim(0)), C = int(dx.dim(1)), H = int(dx.dim(2)), W = int(dx.dim(3));
  const int OH = int(dy.dim(2)), OW = int(dy.dim(3));
  DISPATCH(op, d, cpu::bilinear_backward(N, C, H, W, OH, OW, mode, dy.f32(), dx.f32()),
           cuda_kernels::bilinear_backward(N, C, H, W, OH, OW, mode, dy.f32(), dx.f32(),
                                           g_stream));
}

// ---- dropout
void dropout_forward(const TensorView& x, const TensorView& y, const TensorView& mask, float p,
                     uint64_t seed) {
  const char* op = "dropout_forward";
  Device d = x.device;
  need(op, "x", x, d, x.shape);
  need(op, "y", y, d, x.shape);
  need_mask(op, mask, x);
  DISPATCH(op, d, cpu::dropout_forward(x.numel(), p, seed, x.f32(), y.f32(), mask.u8()),
           cuda_kernels::dropout_forward(x.numel(), p, seed, x.f32(), y.f32(), mask.u8(),
                                         g_stream));
}

void dropout_backward(const TensorView& mask, const TensorView& dy, const TensorView& dx, float p) {
  const char* op = "dropout_backward";
  Device d = dy.device;
  need(op, "dy", dy, d, dy.shape);
  need(op, "dx", dx, d, dy.shape);
  need_mask(op, mask, dy);
  DISPATCH(op, d, cpu::dropout_backward(dy.numel(), p, mask.u8(), dy.f32(), dx.f32()),
           cuda_kernels::dropout_backward(dy.numel(), p, mask.u8(), dy.f32(), dx.f32(), g_stream));
}

// ---- soft-argmax
void softargmax_forward(const TensorView& heat, const TensorView& prob, const TensorView& coords,
                        float beta) {
  const char* op = "softargmax_forward";
  need_rank(op, "heat", heat, 4);
  Device d = heat.device;
  need(op, "heat", heat, d, heat.shape);
  need(op, "prob", prob, d, heat.shape);
  need(op, "coords", coords, d, Shape{heat.dim(0), heat.dim(1), 2});
  DOFPOSE_CHECK(heat.dim(2) > 0 && heat.dim(3) > 0, op, ": heatmaps ", heat.shape.str(),
                " have no pixels");
  const int NJ = int(heat.dim(0) * heat.dim(1)), H = int(heat.dim(2)), W = int(heat.dim(3));
  DISPATCH(op, d, cpu::softargmax_forward(NJ, H, W, beta, heat.f32(), prob.f32(), coords.f32()),
           cuda_kernels::softargmax_forward(NJ, H, W, beta, heat.f32(), prob.f32(), coords.f32(),
                                            g_stream));
}

void softargmax_backward(const TensorView& prob, const TensorView& dcoords,
                         const TensorView& dheat, float beta) {
  const char* op = "softargmax_backward";
  need_rank(op, "prob", prob, 4);
  Device d = prob.device;
  need(op, "prob", prob, d, prob.shape);
  need(op, "dcoords", dcoords, d, Shape{prob.dim(0), prob.dim(1), 2});
  need(op, "dheat", dheat, d, prob.shape);
  const int NJ = int(prob.dim(0) * prob.dim(1)), H = int(prob.dim(2)), W = int(prob.dim(3));
  DISPATCH(op, d,
           cpu::softargmax_backward(NJ, H, W, beta, prob.f32(), dcoords.f32(), dheat.f32()),
           cuda_kernels::softargmax_backward(NJ, H, W, beta, prob.f32(), dcoords.f32(),
                                             dheat.f32(), g_stream));
}

// ---- gradient reversal
void grad_reverse_forward(const TensorView& x, const TensorView& y) {
  const char* op = "grad_reverse_forward";
  Device d = x.device;
  need(op, "x", x, d, x.shape);
  need(op, "y", y, d, x.shape);
  DISPATCH(op, d, cpu::grad_reverse_forward(x.numel(), x.f32(), y.f32()),
           cuda_kernels::grad_reverse_forward(x.numel(), x.f32(), y.f32(), g_stream));
}

void grad_reverse_backward(const TensorView& dy, const TensorView& dx, float lambda) {
  const char* op = "grad_reverse_backward";
  Device d = dy.device;
  need(op, "dy", dy, d, dy.shape);
  need(op, "dx", dx, d, dy.shape);
  DISPATCH(op, d, cpu::grad_reverse_backward(dy.numel(), lambda, dy.f32(), dx.f32()),
           cuda_kernels::grad_reverse_backward(dy.numel(), lambda, dy.f32(), dx.f32(), g_stream));
}

// ---- losses
namespace {
void heatmap_checks(const char* op, const TensorView& pred, const TensorView& target,
                    const TensorView& joint_weight) {
  need_rank(op, "pred", pred, 4);
  Device d = pred.device;
  need(op, "pred", pred, d, pred.shape);
  need(op, "target", target, d, pred.shape);
  maybe(op, "joint_weight", joint_weight, d, Shape{pred.dim(0), pred.dim(1)});
}

void labels_checks(const char* op, const TensorView& logits, const TensorView& labels) {
  need_rank(op, "logits", logits, 3);
  Device d = logits.device;
  need(op, "logits", logits, d, logits.shape);
  DOFPOSE_CHECK(!labels.empty() && labels.dtype == DType::I32 && labels.device == d &&
                    labels.shape == Shape({logits.dim(0), logits.dim(1)}),
                op, ": tensor 'labels' is ", labels.str(), ", expected I32[", logits.dim(0), ",",
                logits.dim(1), "]");
  // Labels are validated on the host (a copy for device tensors: they are small).
  Tensor host;
  const int32_t* l = nullptr;
  if (d == Device::CPU) {
    l = labels.i32();
  } else {
    host = Tensor::empty(labels.shape, DType::I32);
    copy(labels, host);
    l = host.view().i32();
  }
  int64_t C = logits.dim(2);
  for (int64_t i = 0; i < labels.numel(); ++i)
    DOFPOSE_CHECK(l[i] >= -1 && l[i] < C, op, ": tensor 'labels' holds ", l[i], " at index ", i,
                  ", expected -1 (ignore) or a class in [0,", C, ")");
}
}  // namespace

float heatmap_mse_forward(const TensorView& pred, const TensorView& target,
                          const TensorView& joint_weight) {
  const char* op = "heatmap_mse_forward";
  heatmap_checks(op, pred, target, joint_weight);
  const int NJ = int(pred.dim(0) * pred.dim(1)), HW = int(pred.dim(2) * pred.dim(3));
  float loss = 0.f;
  DISPATCH(op, pred.device,
           loss = cpu::heatmap_mse_forward(NJ, HW, pred.f32(), target.f32(), ptr(joint_weight)),
           loss = cuda_kernels::heatmap_mse_forward(NJ, HW, pred.f32(), target.f32(),
                                                    ptr(joint_weight), g_stream));
  return loss;
}

void heatmap_mse_backward(const TensorView& pred, const TensorView& target,
                          const TensorView& joint_weight, const TensorView& dpred, float dloss) {
  const char* op = "heatmap_mse_backward";
  heatmap_checks(op, pred, target, joint_weight);
  need(op, "dpred", dpred, pred.device, pred.shape);
  const int NJ = int(pred.dim(0) * pred.dim(1)), HW = int(pred.dim(2) * pred.dim(3));
  DISPATCH(op, pred.device,
           cpu::heatmap_mse_backward(NJ, HW, pred.f32(), target.f32(), ptr(joint_weight), dloss,
                                     dpred.f32()),
           cuda_kernels::heatmap_mse_backward(NJ, HW, pred.f32(), target.f32(), ptr(joint_weight),
                                              dloss, dpred.f32(), g_stream));
}

float cross_entropy_forward(const TensorView& logits, const TensorView& labels) {
  const char* op = "cross_entropy_forward";
  labels_checks(op, logits, labels);
  const int N = int(logits.dim(0)), T = int(logits.dim(1)), C = int(logits.dim(2));
  float loss = 0.f;
  DISPATCH(op, logits.device,
           loss = cpu::cross_entropy_forward(N, T, C, logits.f32(), labels.i32()),
           loss = cuda_kernels::cross_entropy_forward(N, T, C, logits.f32(), labels.i32(),
                                                      g_stream));
  return loss;
}

void cross_entropy_backward(const TensorView& logits, const TensorView& labels,
                            const TensorView& dlogits, float dloss) {
  const char* op = "cross_entropy_backward";
  labels_checks(op, logits, labels);
  need(op, "dlogits", dlogits, logits.device, logits.shape);
  const int N = int(logits.dim(0)), T = int(logits.dim(1)), C = int(logits.dim(2));
  DISPATCH(op, logits.device,
           cpu::cross_entropy_backward(N, T, C, logits.f32(), labels.i32(), dloss, dlogits.f32()),
           cuda_kernels::cross_entropy_backward(N, T, C, logits.f32(), labels.i32(), dloss,
                                                dlogits.f32(), g_stream));
}

float l1_forward(const TensorView& pred, const TensorView& target) {
  const char* op = "l1_forward";
  Device d = pred.device;
  need(op, "pred", pred, d, pred.shape);
  need(op, "target", target, d, pred.shape);
  float loss = 0.f;
  DISPATCH(op, d, loss = cpu::l1_forward(pred.numel(), pred.f32(), target.f32()),
           loss = cuda_kernels::l1_forward(pred.numel(), pred.f32(), target.f32(), g_stream));
  return loss;
}

void l1_backward(const TensorView& pred, const TensorView& target, const TensorView& dpred,
                 float dloss) {
  const char* op = "l1_backward";
  Device d = pred.device;
  need(op, "pred", pred, d, pred.shape);
  need(op, "target", target, d, pred.shape);
  need(op, "dpred", dpred, d, pred.shape);
  DISPATCH(op, d, cpu::l1_backward(pred.numel(), pred.f32(), target.f32(), dloss, dpred.f32()),
           cuda_kernels::l1_backward(pred.numel(), pred.f32(), target.f32(), dloss, dpred.f32(),
                                     g_stream));
}

}  // namespace dofpose::ops
