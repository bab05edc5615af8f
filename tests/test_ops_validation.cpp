// The op API rejects bad tensors with messages naming the op, tensor and shapes.
#include <doctest/doctest.h>

#include <string>

#include "dofpose/ops.h"
#include "tests/test_util.h"

using namespace dofpose;
using dofpose_test::error_of;

TEST_CASE("ops: shape mismatches name the op, the tensor and both shapes") {
  Tensor x = Tensor::zeros({1, 3, 8, 8});
  Tensor w = Tensor::zeros({4, 3, 3, 3});
  Tensor y_bad = Tensor::zeros({1, 4, 8, 7});
  std::string e = error_of([&] { ops::conv2d_forward(x, w, {}, y_bad, {1, 1, 1}); });
  CHECK(e == "conv2d_forward: tensor 'y' has shape [1,4,8,7], expected [1,4,8,8]");

  Tensor w_bad = Tensor::zeros({4, 2, 3, 3});
  e = error_of([&] { ops::conv2d_shape(x, w_bad, {1, 1, 1}); });
  CHECK(e.find("tensor 'weight' has shape [4,2,3,3], expected [4,3,R,S]") != std::string::npos);

  e = error_of([&] { ops::conv2d_shape(x, w, {1, 1, 2}); });
  CHECK(e.find("groups 2 must divide input channels 3") != std::string::npos);

  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({3, 2}), out = Tensor::zeros({2, 3});
  e = error_of([&] { ops::add_forward(a, b, out); });
  CHECK(e == "add_forward: tensor 'b' has shape [3,2], expected [2,3]");

  Tensor lw = Tensor::zeros({5, 4}), ly = Tensor::zeros({2, 5});
  e = error_of([&] { ops::linear_forward(a, lw, {}, ly); });
  CHECK(e == "linear_forward: tensor 'weight' has shape [5,4], expected [5,3]");
}

TEST_CASE("ops: dtype and rank mismatches are reported") {
  Tensor xi = Tensor::zeros({2, 3}, DType::I32);
  Tensor y = Tensor::zeros({2, 3});
  std::string e = error_of([&] { ops::relu_forward(xi, y); });
  CHECK(e == "relu_forward: tensor 'x' has dtype I32, expected F32");

  Tensor x3 = Tensor::zeros({2, 3, 4});
  e = error_of([&] { ops::maxpool2x2_forward(x3, y); });
  CHECK(e == "maxpool2x2_forward: tensor 'x' has shape [2,3,4], expected 4 dims");

  Tensor logits = Tensor::zeros({2, 9, 3});
  Tensor labels = Tensor::zeros({2, 9}, DType::I32);
  labels.view().i32()[5] = 3;
  e = error_of([&] { ops::cross_entropy_forward(logits, labels); });
  CHECK(e.find("holds 3 at index 5, expected -1 (ignore) or a class in [0,3)") != std::string::npos);

  Tensor bad_labels = Tensor::zeros({2, 8}, DType::I32);
  e = error_of([&] { ops::cross_entropy_forward(logits, bad_labels); });
  CHECK(e.find("tensor 'labels' is I32[2,8]@cpu, expected I32[2,9]") != std::string::npos);
}

TEST_CASE("ops: missing required tensors and bad parameters") {
  Tensor x = Tensor::zeros({2, 3});
  std::string e = error_of([&] { ops::relu_forward(x, TensorView()); });
  CHECK(e == "relu_forward: tensor 'y' is required but empty");
  Tensor one = Tensor::zeros({1, 3});
  Tensor g = Tensor::zeros({3}), sm = Tensor::zeros({3}), si = Tensor::zeros({3});
  e = error_of([&] { ops::batchnorm_forward_train(one, g, g, {}, {}, one, sm, si); });
  CHECK(e.find("more than one value per channel") != std::string::npos);
  Tensor xc = Tensor::zeros({1, 2, 2, 2});
  Tensor w = Tensor::zeros({1, 2, 5, 5});
  e = error_of([&] { ops::conv2d_shape(xc, w, {1, 1, 1}); });
  CHECK(e.find("kernel 5x5 is larger than the padded input") != std::string::npos);
}

TEST_CASE("ops: column copies, per-column affine and the merge check their tensors") {
  Tensor src = Tensor::zeros({4, 6}), dst = Tensor::zeros({4, 5});
  std::string e = error_of([&] { ops::copy_columns(src, 3, dst, 0, 4); });
  CHECK(e == "copy_columns: columns [3,7) of F32[4,6]@cpu -> [0,4) of F32[4,5]@cpu are out of range");
  Tensor dst_rows = Tensor::zeros({3, 5});
  e = error_of([&] { ops::copy_columns(src, 0, dst_rows, 0, 2); });
  CHECK(e == "copy_columns: tensor 'dst' has shape [3,5], expected [4,5]");

  Tensor x = Tensor::zeros({2, 3}), mul = Tensor::zeros({4}), add = Tensor::zeros({3});
  e = error_of([&] { ops::affine_columns(x, mul, add, x); });
  CHECK(e == "affine_columns: tensor 'mul' has shape [4], expected [3]");
  Tensor m2 = Tensor::zeros({2}), s3 = Tensor::zeros({3}), m4 = Tensor::zeros({4});
  e = error_of([&] { ops::standardize_columns(x, m2, s3, x); });
  CHECK(e == "standardize_columns: tensor 'std' has shape [3], expected [2]");
  e = error_of([&] { ops::standardize_columns(x, m4, m4, x); });
  CHECK(e == "standardize_columns: tensor 'mean' has 4 columns, more than x's 3");

  Tensor low = Tensor::zeros({1, 2, 3, 3}), a = Tensor::zeros({1, 2, 6, 5}), y = Tensor::zeros({1, 2, 6, 6});
  e = error_of([&] { ops::upsample_add_forward(a, low, y); });
  CHECK(e == "upsample_add_forward: tensor 'a' has shape [1,2,6,5], expected [1,2,6,6]");
}
