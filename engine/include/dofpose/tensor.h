// Tensor (owning) and TensorView (non-owning): shape up to 5 dims, strides in
// elements, dtype, device. Kernels take contiguous float32 views.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>

#include "dofpose/dtype.h"
#include "dofpose/error.h"

namespace dofpose {

constexpr int kMaxDims = 5;

struct Shape {
  int ndim = 0;
  int64_t dims[kMaxDims] = {0, 0, 0, 0, 0};

  Shape() = default;
  Shape(std::initializer_list<int64_t> d);
  static Shape from(const int64_t* d, int n);

  int64_t operator[](int i) const { return dims[i < 0 ? i + ndim : i]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "[2,3,64,64]"
};

class TensorView {
 public:
  void* data = nullptr;
  Shape shape;
  int64_t strides[kMaxDims] = {0, 0, 0, 0, 0};  // in elements
  DType dtype = DType::F32;
  Device device = Device::CPU;

  TensorView() = default;
  // A contiguous view of existing memory.
  TensorView(void* data, Shape shape, DType dtype = DType::F32, Device device = Device::CPU);

  int ndim() const { return shape.ndim; }
  int64_t dim(int i) const { return shape[i]; }
  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  bool empty() const { return data == nullptr; }
  bool is_contiguous() const;

  // Typed access; throw when the dtype differs.
  float* f32() const;
  int32_t* i32() const;
  uint8_t* u8() const;

  // Same memory, another shape of equal numel (contiguous views only).
  TensorView reshape(Shape s) const;
  // Rows [begin, end) of dim 0.
  TensorView slice0(int64_t begin, int64_t end) const;
  std::string str() const;  // "F32[2,3,64,64]@cpu"
};

class Tensor {
 public:
  Tensor() = default;
  ~Tensor();
  Tensor(Tensor&& o) noexcept;
  Tensor& operator=(Tensor&& o) noexcept;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  static Tensor empty(Shape s, DType t = DType::F32, Device d = Device::CPU);
  static Tensor zeros(Shape s, DType t = DType::F32, Device d = Device::CPU);
  // A CPU float32 tensor holding a copy of `values` (numel must match).
  static Tensor from_floats(Shape s, const float* values);

  const TensorView& view() const { return view_; }
  operator const TensorView&() const { return view_; }  // NOLINT: intended
  float* f32() const { return view_.f32(); }
  const Shape& shape() const { return view_.shape; }
  int64_t numel() const { return view_.numel(); }
  size_t nbytes() const { return view_.nbytes(); }
  DType dtype() const { return view_.dtype; }
  Device device() const { return view_.device; }
  bool empty() const { return view_.data == nullptr; }

  // A copy on another device (or a fresh copy on the same one).
  Tensor to(Device d) const;

 private:
  TensorView view_;
  void release();
};

// Copies between views of equal shape and dtype on any devices (contiguous).
void copy(const TensorView& src, const TensorView& dst);
// Fills a float32 view with a value.
void fill(const TensorView& dst, float value);

// "op: tensor 'name' has shape [..], expected [..]" when shapes differ.
void check_shape(const char* op, const char* name, const TensorView& t, const Shape& expected);
// Checks dtype F32, contiguity and device.
void check_f32(const char* op, const char* name, const TensorView& t, Device d);

}  // namespace dofpose
