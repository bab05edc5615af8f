// The optional cuDNN convolution (configure with -DDOFPOSE_CUDNN=ON): a
// reference to compare our conv2d kernels with, in results (tests/cuda) and
// speed (bench/bench_cuda_kernels.cpp). Never used by the models, never
// required: without DOFPOSE_WITH_CUDNN this file compiles to nothing.
// Legacy cuDNN API (cudnnConvolutionForward; still in cuDNN 9): the
// heuristic's first algorithm per shape, a grow-only workspace per device.
// Math: F32 forbids tensor cores (CUDNN_FMA_MATH); TF32 allows them; FP16 /
// BF16 are not offered (cuDNN would need 16-bit tensors).
#ifdef DOFPOSE_WITH_CUDNN
#include <cudnn.h>

#include <map>
#include <mutex>
#include <tuple>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"

#define DOFPOSE_CUDNN_CHECK(call)                                                         \
  do {                                                                                    \
    cudnnStatus_t st_ = (call);                                                           \
    if (st_ != CUDNN_STATUS_SUCCESS)                                                      \
      ::dofpose::fail("cuDNN error ", cudnnGetErrorString(st_), " in ", #call, " at ",    \
                      __FILE__, ":", __LINE__);                                           \
  } while (0)

namespace dofpose::cuda_kernels {

namespace {

struct DeviceState {
  cudnnHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

DeviceState& state() {
  int dev = 0;
  DOFPOSE_CUDA_CHECK(cudaGetDevice(&dev));
  static std::mutex mu;
  static std::map<int, DeviceState> states;
  std::lock_guard<std::mutex> lock(mu);
  DeviceState& s = states[dev];
  if (!s.handle) DOFPOSE_CUDNN_CHECK(cudnnCreate(&s.handle));
  return s;
}

// The four descriptors of one call, destroyed on scope exit.
struct Descriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, b = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  Descriptors() {
    DOFPOSE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
    DOFPOSE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
    DOFPOSE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&b));
    DOFPOSE_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
    DOFPOSE_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
  }
  ~Descriptors() {
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyTensorDescriptor(b);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyConvolutionDescriptor(conv);
  }
};

}  // namespace

std::string cudnn_version() {
  const size_t v = cudnnGetVersion();
  return concat(v / 10000, ".", (v / 100) % 100, ".", v % 100);
}

void cudnn_conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                          float* y, void* stream) {
  DeviceState& st = state();
  DOFPOSE_CUDNN_CHECK(cudnnSetStream(st.handle, static_cast<cudaStream_t>(stream)));
  Descriptors d;
  DOFPOSE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d.x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.N,
                                                 s.C, s.H, s.W));
  DOFPOSE_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s.K,
                                                 s.C / s.groups, s.R, s.S));
  DOFPOSE_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d.conv, s.pad, s.pad, s.stride, s.stride,
                                                      1, 1, CUDNN_CROSS_CORRELATION,
                                                      CUDNN_DATA_FLOAT));
  DOFPOSE_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d.conv, s.groups));
  DOFPOSE_CUDNN_CHECK(cudnnSetConvolutionMathType(
      d.conv, math_mode() == MathMode::TF32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
  DOFPOSE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d.y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.N,
                                                 s.K, s.P(), s.Q()));
  cudnnConvolutionFwdAlgoPerf_t perf[8];
  int found = 0;
  DOFPOSE_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(st.handle, d.x, d.w, d.conv, d.y, 8,
                                                             &found, perf));
  DOFPOSE_CHECK(found > 0, "cuDNN: no forward algorithm for this convolution");
  int pick = 0;
  while (pick < found && perf[pick].status != CUDNN_STATUS_SUCCESS) ++pick;
  DOFPOSE_CHECK(pick < found, "cuDNN: no usable forward algorithm");
  const cudnnConvolutionFwdAlgo_t algo = perf[pick].algo;
  size_t bytes = 0;
  DOFPOSE_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(st.handle, d.x, d.w, d.conv, d.y,
                                                              algo, &bytes));
  if (bytes > st.workspace_bytes) {
    if (st.workspace) DOFPOSE_CUDA_CHECK(cudaFree(st.workspace));
    st.workspace = nullptr;
    st.workspace_bytes = 0;
    DOFPOSE_CUDA_CHECK(cudaMalloc(&st.workspace, bytes));
    st.workspace_bytes = bytes;
  }
  const float one = 1.0f, zero = 0.0f;
  DOFPOSE_CUDNN_CHECK(cudnnConvolutionForward(st.handle, &one, d.x, x, d.w, w, d.conv, algo,
                                              st.workspace, st.workspace_bytes, &zero, d.y, y));
  if (bias) {
    DOFPOSE_CUDNN_CHECK(
        cudnnSetTensor4dDescriptor(d.b, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, s.K, 1, 1));
    DOFPOSE_CUDNN_CHECK(cudnnAddTensor(st.handle, &one, d.b, bias, &one, d.y, y));
  }
}

}  // namespace dofpose::cuda_kernels
#endif  // DOFPOSE_WITH_CUDNN
