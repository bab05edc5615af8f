// Tensor bookkeeping, the arena, and the no-allocation steady state.
#include <doctest/doctest.h>

#include <string>

#include "dofpose/arena.h"
#include "dofpose/cuda_backend.h"
#include "dofpose/ops.h"
#include "dofpose/tensor.h"
#include "tests/alloc_counter.h"
#include "tests/test_util.h"

using namespace dofpose;
using dofpose_test::error_of;

TEST_CASE("tensor: shape, strides, reshape, slice") {
  Tensor t = Tensor::zeros({2, 3, 4, 5});
  CHECK(t.numel() == 120);
  CHECK(t.nbytes() == 480);
  CHECK(t.view().strides[0] == 60);
  CHECK(t.view().strides[3] == 1);
  CHECK(t.view().is_contiguous());
  CHECK(t.shape().str() == "[2,3,4,5]");
  CHECK(t.view().str() == "F32[2,3,4,5]@cpu");
  TensorView r = t.view().reshape({6, 20});
  CHECK(r.shape == Shape({6, 20}));
  CHECK(r.data == t.view().data);
  TensorView s = t.view().slice0(1, 2);
  CHECK(s.shape == Shape({1, 3, 4, 5}));
  CHECK(static_cast<float*>(s.data) == t.f32() + 60);
  CHECK(error_of([&] { t.view().reshape({7, 20}); }).find("cannot view F32[2,3,4,5]@cpu as [7,20]") !=
        std::string::npos);
  CHECK(error_of([&] { t.view().slice0(1, 3); }).find("out of range") != std::string::npos);
  CHECK(error_of([&] { Shape({1, 2, 3, 4, 5, 6}); }).find("at most 5") != std::string::npos);
  CHECK(error_of([&] { t.view().i32(); }).find("expected dtype I32") != std::string::npos);
}

TEST_CASE("tensor: move semantics and copies") {
  float vals[6] = {1, 2, 3, 4, 5, 6};
  Tensor a = Tensor::from_floats({2, 3}, vals);
  Tensor b = std::move(a);
  CHECK(a.empty());
  CHECK(b.f32()[5] == 6.f);
  Tensor c = b.to(Device::CPU);
  CHECK(c.f32() != b.f32());
  CHECK(c.f32()[4] == 5.f);
  Tensor d = Tensor::zeros({3, 2});
  CHECK(error_of([&] { copy(b, d); }).find("differ in shape") != std::string::npos);
  fill(d, 2.5f);
  CHECK(d.f32()[5] == 2.5f);
}

TEST_CASE("tensor: CUDA tensors fail clearly without a device") {
  if (cuda::built() && cuda::device_count() > 0) {
    MESSAGE("a CUDA device is present: covered by the CUDA test suite instead");
    return;
  }
  std::string e = error_of([] { Tensor::empty({4}, DType::F32, Device::CUDA); });
  CHECK(e.find("cuda") != std::string::npos);
}

TEST_CASE("arena: grows on the first pass, then serves from one block") {
  Arena arena;
  TensorView a = arena.alloc({100});
  TensorView b = arena.alloc({3, 7});
  CHECK(reinterpret_cast<uintptr_t>(a.data) % 64 == 0);
  CHECK(reinterpret_cast<uintptr_t>(b.data) % 64 == 0);
  CHECK(arena.chunk_count() == 2);  // first pass: overflow chunks
  CHECK(arena.high_water() == 448 + 128);
  arena.reset();
  CHECK(arena.chunk_count() == 1);
  CHECK(arena.capacity() >= 576);
  int64_t before = dofpose_test::allocations();
  TensorView a2 = arena.alloc({100});
  TensorView b2 = arena.alloc({3, 7});
  CHECK(dofpose_test::allocations() == before);
  CHECK(static_cast<char*>(b2.data) - static_cast<char*>(a2.data) == 448);
  CHECK(arena.used() == 576);
}

namespace {
// A small network through the op API with every activation from the arena:
// conv -> BN(inference) -> ReLU -> maxpool -> conv -> upsample -> add -> soft-argmax -> linear.
struct TinyNet {
  Tensor w1 = Tensor::zeros({8, 3, 3, 3}), b1 = Tensor::zeros({8});
  Tensor g = Tensor::zeros({8}), be = Tensor::zeros({8}), rm = Tensor::zeros({8}), rv = Tensor::zeros({8});
  Tensor w2 = Tensor::zeros({8, 8, 1, 1}), b2 = Tensor::zeros({8});
  Tensor wl = Tensor::zeros({5, 16}), bl = Tensor::zeros({5});
  TinyNet() {
    for (Tensor* t : {&w1, &b1, &g, &be, &rm, &rv, &w2, &b2, &wl, &bl})
      for (int64_t i = 0; i < t->numel(); ++i) t->f32()[i] = 0.1f + 0.01f * float(i % 17);
  }
  float forward(Arena& arena, const TensorView& x) {
    TensorView c1 = arena.alloc(ops::conv2d_output_shape(x, w1, {1, 1, 1}));
    ops::conv2d_forward(x, w1, b1, c1, {1, 1, 1});
    TensorView n1 = arena.alloc(c1.shape);
    ops::batchnorm_forward_infer(c1, g, be, rm, rv, n1);
    ops::relu_forward(n1, n1);
    TensorView p1 = arena.alloc({c1.dim(0), 8, c1.dim(2) / 2, c1.dim(3) / 2});
    ops::maxpool2x2_forward(n1, p1);
    TensorView c2 = arena.alloc(p1.shape);
    ops::conv2d_forward(p1, w2, b2, c2, {1, 0, 1});
    TensorView u = arena.alloc(c1.shape);
    ops::upsample_nearest2x_forward(c2, u);
    TensorView s = arena.alloc(c1.shape);
    ops::add_forward(u, n1, s);
    TensorView prob = arena.alloc(c1.shape);
    TensorView xy = arena.alloc({c1.dim(0), 8, 2});
    ops::softargmax_forward(s, prob, xy, 1.f);
    TensorView out = arena.alloc({c1.dim(0), 5});
    ops::linear_forward(xy.reshape({c1.dim(0), 16}), wl, bl, out);
    return out.f32()[0];
  }
};
}  // namespace

TEST_CASE("arena: a steady-state forward pass does no heap allocation") {
  TinyNet net;
  Tensor x = Tensor::zeros({2, 3, 32, 32});
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = float(i % 13) * 0.1f;
  Arena arena;
  float first = net.forward(arena, x);  // sizes the arena and the kernels' scratch
  arena.reset();
  int64_t before = dofpose_test::allocations();
  float second = net.forward(arena, x);
  arena.reset();
  float third = net.forward(arena, x);
  int64_t during = dofpose_test::allocations() - before;
  CHECK(during == 0);
  CHECK(first == second);
  CHECK(second == third);
  // The counter really counts: a std::string of 100 chars allocates.
  int64_t b2 = dofpose_test::allocations();
  std::string s(100, 'x');
  CHECK(dofpose_test::allocations() > b2);
}
