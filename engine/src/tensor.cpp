// Shape, TensorView and Tensor: bookkeeping only; kernels live in kernels/.
#include "dofpose/tensor.h"

#include <cstring>

#include "dofpose/arena.h"
#include "dofpose/cuda_backend.h"
#include "dofpose/ops.h"
#ifdef DOFPOSE_WITH_CUDA
#include "kernels/cuda/cuda_kernels.h"
#endif

namespace dofpose {

Shape::Shape(std::initializer_list<int64_t> d) {
  DOFPOSE_CHECK(d.size() <= size_t(kMaxDims), "Shape: ", d.size(), " dims, at most ", kMaxDims,
                " are supported");
  for (int64_t v : d) {
    DOFPOSE_CHECK(v >= 0, "Shape: negative dimension ", v);
    dims[ndim++] = v;
  }
}

Shape Shape::from(const int64_t* d, int n) {
  DOFPOSE_CHECK(n >= 0 && n <= kMaxDims, "Shape: ", n, " dims, at most ", kMaxDims,
                " are supported");
  Shape s;
  for (int i = 0; i < n; ++i) {
    DOFPOSE_CHECK(d[i] >= 0, "Shape: negative dimension ", d[i]);
    s.dims[s.ndim++] = d[i];
  }
  return s;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= dims[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (dims[i] != o.dims[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) s += (i ? "," : "") + std::to_string(dims[i]);
  return s + "]";
}

TensorView::TensorView(void* d, Shape s, DType t, Device dev)
    : data(d), shape(s), dtype(t), device(dev) {
  int64_t stride = 1;
  for (int i = s.ndim - 1; i >= 0; --i) {
    strides[i] = stride;
    stride *= s.dims[i];
  }
}

bool TensorView::is_contiguous() const {
  int64_t stride = 1;
  for (int i = shape.ndim - 1; i >= 0; --i) {
    if (shape.dims[i] != 1 && strides[i] != stride) return false;
    stride *= shape.dims[i];
  }
  return true;
}

float* TensorView::f32() const {
  DOFPOSE_CHECK(dtype == DType::F32, "tensor ", str(), ": expected dtype F32");
  return static_cast<float*>(data);
}
int32_t* TensorView::i32() const {
  DOFPOSE_CHECK(dtype == DType::I32, "tensor ", str(), ": expected dtype I32");
  return static_cast<int32_t*>(data);
}
uint8_t* TensorView::u8() const {
  DOFPOSE_CHECK(dtype == DType::U8, "tensor ", str(), ": expected dtype U8");
  return static_cast<uint8_t*>(data);
}

TensorView TensorView::reshape(Shape s) const {
  DOFPOSE_CHECK(is_contiguous(), "reshape: tensor ", str(), " is not contiguous");
  DOFPOSE_CHECK(s.numel() == numel(), "reshape: cannot view ", str(), " as ", s.str(),
                " (element counts differ)");
  return TensorView(data, s, dtype, device);
}

TensorView TensorView::slice0(int64_t begin, int64_t end) const {
  DOFPOSE_CHECK(shape.ndim >= 1 && begin >= 0 && begin <= end && end <= shape[0],
                "slice0: rows [", begin, ",", end, ") out of range for ", str());
  TensorView v = *this;
  v.shape.dims[0] = end - begin;
  v.data = static_cast<char*>(data) + size_t(begin * strides[0]) * dtype_size(dtype);
  return v;
}

std::string TensorView::str() const {
  return std::string(dtype_name(dtype)) + shape.str() + "@" + device_name(device);
}

// ---- Tensor
Tensor::~Tensor() { release(); }

void Tensor::release() {
  if (view_.data) device_free(view_.data, view_.device);
  view_ = TensorView();
}

Tensor::Tensor(Tensor&& o) noexcept : view_(o.view_) { o.view_ = TensorView(); }

Tensor& Tensor::operator=(Tensor&& o) noexcept {
  if (this != &o) {
    release();
    view_ = o.view_;
    o.view_ = TensorView();
  }
  return *this;
}

Tensor Tensor::empty(Shape s, DType t, Device d) {
  Tensor out;
  size_t bytes = size_t(s.numel()) * dtype_size(t);
  // Zero-size tensors still get a valid (tiny) allocation so data != nullptr.
  out.view_ = TensorView(device_malloc(bytes ? bytes : 1, d), s, t, d);
  return out;
}

Tensor Tensor::zeros(Shape s, DType t, Device d) {
  Tensor out = empty(s, t, d);
  if (d == Device::CPU)
    std::memset(out.view_.data, 0, out.nbytes());
  else
    cuda::memset(out.view_.data, 0, out.nbytes(), ops::cuda_stream());
  return out;
}

Tensor Tensor::from_floats(Shape s, const float* values) {
  Tensor out = empty(s, DType::F32, Device::CPU);
  std::memcpy(out.view_.data, values, out.nbytes());
  return out;
}

Tensor Tensor::to(Device d) const {
  Tensor out = empty(view_.shape, view_.dtype, d);
  copy(view_, out.view_);
  return out;
}

void copy(const TensorView& src, const TensorView& dst) {
  DOFPOSE_CHECK(src.shape == dst.shape && src.dtype == dst.dtype, "copy: source ", src.str(),
                " and destination ", dst.str(), " differ in shape or dtype");
  DOFPOSE_CHECK(src.is_contiguous() && dst.is_contiguous(), "copy: ", src.str(), " -> ",
                dst.str(), ": both must be contiguous");
  size_t n = src.nbytes();
  if (n == 0) return;
  if (src.device == Device::CPU && dst.device == Device::CPU)
    std::memcpy(dst.data, src.data, n);
  else if (src.device == Device::CPU)  // ordered after the ops queued on this thread's stream
    cuda::memcpy_h2d(dst.data, src.data, n, ops::cuda_stream());
  else if (dst.device == Device::CPU)
    cuda::memcpy_d2h(dst.data, src.data, n, ops::cuda_stream());
  else  // device to device: queued, no host synchronisation
    cuda::memcpy_d2d(dst.data, src.data, n, ops::cuda_stream());
}

void fill(const TensorView& dst, float value) {
  DOFPOSE_CHECK(dst.is_contiguous(), "fill: ", dst.str(), " is not contiguous");
  float* p = dst.f32();
  if (dst.device == Device::CPU) {
    for (int64_t i = 0, n = dst.numel(); i < n; ++i) p[i] = value;
    return;
  }
#ifdef DOFPOSE_WITH_CUDA
  cuda_kernels::fill(dst.numel(), value, p, ops::cuda_stream());
#else
  fail("fill: ", dst.str(), ": this build has no CUDA backend");
#endif
}

void check_shape(const char* op, const char* name, const TensorView& t, const Shape& expected) {
  DOFPOSE_CHECK(t.shape == expected, op, ": tensor '", name, "' has shape ", t.shape.str(),
                ", expected ", expected.str());
}

void check_f32(const char* op, const char* name, const TensorView& t, Device d) {
  DOFPOSE_CHECK(t.data != nullptr || t.numel() == 0, op, ": tensor '", name, "' is empty (no data)");
  DOFPOSE_CHECK(t.dtype == DType::F32, op, ": tensor '", name, "' has dtype ", dtype_name(t.dtype),
                ", expected F32");
  DOFPOSE_CHECK(t.device == d, op, ": tensor '", name, "' is on ", device_name(t.device),
                ", expected ", device_name(d));
  DOFPOSE_CHECK(t.is_contiguous(), op, ": tensor '", name, "' ", t.str(), " is not contiguous");
}

}  // namespace dofpose
