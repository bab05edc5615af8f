// CUDA runtime basics: copies and the first element-wise ops on a Context's
// stream. The op-by-op parity suite is test_backend_ops.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "dofpose/context.h"
#include "dofpose/cuda_backend.h"
#include "dofpose/ops.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/cuda_kernels.h"

using namespace dofpose;

namespace {

Tensor random_cpu(Shape s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = d(rng);
  return t;
}

// Outputs are poisoned with NaN first, so an element a kernel forgets to write fails.
Tensor poisoned_cuda(Shape s) {
  Tensor t = Tensor::empty(s, DType::F32, Device::CUDA);
  cuda::memset(t.view().data, 0xFF, t.nbytes());
  return t;
}

void check_close(const Tensor& cuda_result, const Tensor& cpu_ref, float rtol = 1e-5f, float atol = 1e-6f) {
  Tensor got = cuda_result.to(Device::CPU);
  REQUIRE(got.numel() == cpu_ref.numel());
  for (int64_t i = 0; i < got.numel(); ++i) {
    float g = got.f32()[i], r = cpu_ref.f32()[i];
    if (!(std::fabs(g - r) <= atol + rtol * std::fabs(r))) {
      FAIL("element ", i, ": cuda ", g, " vs cpu ", r);
    }
  }
}

}  // namespace

TEST_CASE("cuda: host <-> device copies round-trip") {
  Tensor a = random_cpu({3, 5, 7}, 1);
  Tensor d = a.to(Device::CUDA);
  Tensor d2 = d.to(Device::CUDA);
  Tensor back = d2.to(Device::CPU);
  for (int64_t i = 0; i < a.numel(); ++i) REQUIRE(back.f32()[i] == a.f32()[i]);
}

TEST_CASE("cuda: element-wise ops match the CPU over odd sizes") {
  Context ctx(Device::CUDA);
  ctx.make_current();
  for (int64_t n : {1, 7, 255, 256, 257, 100003}) {
    CAPTURE(n);
    Tensor a = random_cpu({n}, 2), b = random_cpu({n}, 3), dy = random_cpu({n}, 4);
    Tensor ref = Tensor::empty({n});
    Tensor da = a.to(Device::CUDA), db = b.to(Device::CUDA), ddy = dy.to(Device::CUDA);

    Tensor out = poisoned_cuda({n});
    ops::relu_forward(da, out);
    ops::relu_forward(a, ref);
    ctx.synchronize();
    check_close(out, ref);

    ops::relu_backward(da, ddy, out);
    ops::relu_backward(a, dy, ref);
    ctx.synchronize();
    check_close(out, ref);

    ops::add_forward(da, db, out);
    ops::add_forward(a, b, ref);
    ctx.synchronize();
    check_close(out, ref);

    ops::accumulate(da, out);
    ops::accumulate(a, ref);
    ctx.synchronize();
    check_close(out, ref);
  }
  ops::set_cuda_stream(nullptr);
}

// The nearest-upsample backward reads dy's row pairs as float2 when dy is
// 8-byte aligned; a dy one float into an allocation takes the scalar path.
TEST_CASE("cuda: nearest-upsample backward from an aligned and an unaligned dy") {
  const int N = 2, C = 3, H = 5, W = 7;
  const int64_t n_dy = int64_t(N) * C * 4 * H * W, n_dx = int64_t(N) * C * H * W;
  Tensor dy = random_cpu(Shape{n_dy}, 11);
  std::vector<float> want(size_t(n_dx), 0.f);
  cpu::upsample_nearest2x_backward(N, C, H, W, dy.f32(), want.data());
  Tensor room = Tensor::empty(Shape{n_dy + 1}, DType::F32, Device::CUDA);
  for (int offset : {0, 1}) {
    CAPTURE(offset);
    float* d_dy = static_cast<float*>(room.view().data) + offset;
    cuda::memcpy_h2d(d_dy, dy.f32(), size_t(n_dy) * sizeof(float));
    Tensor dx = poisoned_cuda(Shape{n_dx});
    cuda_kernels::upsample_nearest2x_backward(N, C, H, W, d_dy, static_cast<float*>(dx.view().data),
                                              nullptr);
    Tensor got = dx.to(Device::CPU);
    for (int64_t i = 0; i < n_dx; ++i) REQUIRE(got.f32()[i] == want[size_t(i)]);  // same sums, same order
  }
}
