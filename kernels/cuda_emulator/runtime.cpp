// The CUDA host emulator's runtime API and cuBLAS subset: one emulated device,
// host memory with an allocation table (so copies and kernel arguments are
// checked against device ranges), synchronous streams, stream capture into
// replayable graphs with CUDA's rules on what may not happen during a capture.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "cublas_v2.h"
#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"
#include "mma.h"

struct CUstream_st {
  bool capturing = false;
  bool invalidated = false;
  std::vector<std::function<void()>> ops;
};
struct CUevent_st {
  std::chrono::steady_clock::time_point at;
};
struct CUgraph_st {
  std::vector<std::function<void()>> ops;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> ops;
};
struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace {
std::mutex g_mutex;
std::map<uintptr_t, size_t> g_allocs;  // base -> bytes
thread_local cudaError_t t_last = cudaSuccess;
thread_local std::string t_last_message;
thread_local CUstream_st* t_capture = nullptr;  // this thread's capturing stream
int g_device = 0;

cudaError_t fail(cudaError_t e, const std::string& message) {
  emu::set_error(e, message);
  return e;
}

// CUDA forbids potentially synchronising calls while this thread captures.
bool capture_forbids(const char* call) {
  if (!t_capture) return false;
  t_capture->invalidated = true;
  fail(cudaErrorStreamCaptureUnsupported,
       std::string(call) + " during a stream capture (it would synchronise or allocate)");
  return true;
}

const char* kind_name(cudaMemcpyKind k) {
  switch (k) {
    case cudaMemcpyHostToDevice: return "host to device";
    case cudaMemcpyDeviceToHost: return "device to host";
    case cudaMemcpyDeviceToDevice: return "device to device";
    case cudaMemcpyHostToHost: return "host to host";
    default: return "default";
  }
}

cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  const bool dd = emu::is_device_range(dst, bytes), sd = emu::is_device_range(src, bytes);
  bool ok = true;
  std::string why;
  switch (kind) {
    case cudaMemcpyHostToDevice: ok = dd && !sd; why = dd ? "the source is device memory" : "the destination is not a device range"; break;
    case cudaMemcpyDeviceToHost: ok = sd && !dd; why = sd ? "the destination is device memory" : "the source is not a device range"; break;
    case cudaMemcpyDeviceToDevice: ok = dd && sd; why = "an operand is not a device range"; break;
    default: break;
  }
  if (ok) return cudaSuccess;
  return fail(cudaErrorInvalidValue, std::string("cudaMemcpy ") + kind_name(kind) + " of " +
                                         std::to_string(bytes) + " bytes: " + why);
}
}  // namespace

namespace emu {

void set_error(cudaError_t e, const std::string& message) {
  t_last = e;
  t_last_message = message;
  std::fprintf(stderr, "[cuda emulator] %s\n", message.c_str());
}

bool is_device_range(const void* p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}

// The allocation holding byte p (the memory profile caches it).

bool device_allocation(const void* p, uintptr_t& lo, uintptr_t& hi) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return false;
  --it;
  if (a < it->first || a >= it->first + std::max<size_t>(it->second, 1)) return false;
  lo = it->first;
  hi = it->first + it->second;
  return true;
}

int blocks_per_sm(int threads_per_block) {
  if (threads_per_block <= 0) return 0;
  return std::max(1, std::min(32, kMaxThreadsPerSM / threads_per_block));
}

cudaError_t stream_op(cudaStream_t stream, std::function<void()> op) {
  if (stream && stream->capturing) {
    stream->ops.push_back(std::move(op));
    return cudaSuccess;
  }
  op();
  return cudaSuccess;
}

void submit(const LaunchShape& shape, cudaStream_t stream, std::function<void()> body) {
  const Dim3 g = shape.grid, b = shape.block;
  const unsigned long long threads = 1ull * b.x * b.y * b.z;
  if (threads == 0 || threads > 1024 || b.z > 64 || g.x == 0 || g.y == 0 || g.z == 0 ||
      g.y > 65535 || g.z > 65535) {
    fail(cudaErrorInvalidConfiguration,
         "kernel " + shape.name + ": invalid launch configuration (grid " + std::to_string(g.x) +
             "x" + std::to_string(g.y) + "x" + std::to_string(g.z) + ", block " +
             std::to_string(b.x) + "x" + std::to_string(b.y) + "x" + std::to_string(b.z) + ")");
    return;
  }
  if (shape.dynamic_smem > 227 * 1024) {
    fail(cudaErrorInvalidValue, "kernel " + shape.name + ": " +
                                    std::to_string(shape.dynamic_smem) +
                                    " bytes of dynamic shared memory (at most 227 KiB)");
    return;
  }
  auto run = [shape, body = std::move(body)] {
    try {
      run_kernel(shape, body);
    } catch (const std::exception& e) {
      fail(cudaErrorLaunchFailure, "kernel " + shape.name + ": " + e.what());
    }
  };
  stream_op(stream, std::move(run));
}

}  // namespace emu

// ---- devices
cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = g_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
  if (d != 0) return fail(cudaErrorInvalidDevice, "cudaSetDevice: the emulator has device 0 only");
  g_device = d;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties: device " + std::to_string(d));
  *p = {};
  std::snprintf(p->name, sizeof p->name, "dofpose CUDA host emulator");
  p->totalGlobalMem = size_t(16) << 30;
  p->sharedMemPerBlock = 48 * 1024;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = emu::kEmulatedSMs;
  p->clockRate = 1000000;
  p->memoryClockRate = 1000000;
  p->memoryBusWidth = 256;
  p->cooperativeLaunch = 1;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d) {
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, d) != cudaSuccess) return cudaErrorInvalidDevice;
  switch (a) {
    case cudaDevAttrMaxThreadsPerBlock: *v = p.maxThreadsPerBlock; break;
    case cudaDevAttrClockRate: *v = p.clockRate; break;
    case cudaDevAttrMultiProcessorCount: *v = p.multiProcessorCount; break;
    case cudaDevAttrMemoryClockRate: *v = p.memoryClockRate; break;
    case cudaDevAttrGlobalMemoryBusWidth: *v = p.memoryBusWidth; break;
    case cudaDevAttrComputeCapabilityMajor: *v = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *v = p.minor; break;
    case cudaDevAttrCooperativeLaunch: *v = 1; break;
    default: return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute not emulated");
  }
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 0;  // prints as "0.0": no CUDA runtime
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = 0;
  return cudaSuccess;
}

// ---- memory
cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = nullptr;
  if (capture_forbids("cudaMalloc")) return cudaErrorStreamCaptureUnsupported;
  // Exactly `bytes` (256-aligned like cudaMalloc's): under AddressSanitizer a
  // kernel reading or writing past the end of a buffer is reported.
  void* m = ::operator new(bytes ? bytes : 1, std::align_val_t(256), std::nothrow);
  if (!m) return fail(cudaErrorMemoryAllocation, "cudaMalloc of " + std::to_string(bytes) + " bytes");
  std::memset(m, 0xff, bytes);  // fresh device memory holds garbage: NaN exposes reads before writes
  std::lock_guard<std::mutex> lock(g_mutex);
  g_allocs[reinterpret_cast<uintptr_t>(m)] = bytes;
  *p = m;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  if (capture_forbids("cudaFree")) return cudaErrorStreamCaptureUnsupported;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it == g_allocs.end())
      return fail(cudaErrorInvalidDevicePointer, "cudaFree of a pointer cudaMalloc did not return");
    g_allocs.erase(it);
  }
  ::operator delete(p, std::align_val_t(256));
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (capture_forbids("cudaMemcpy")) return cudaErrorStreamCaptureUnsupported;
  if (const cudaError_t e = check_copy(dst, src, bytes, kind)) return e;
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s) {
  if (const cudaError_t e = check_copy(dst, src, bytes, kind)) return e;
  return emu::stream_op(s, [dst, src, bytes] { std::memcpy(dst, src, bytes); });
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (capture_forbids("cudaMemset")) return cudaErrorStreamCaptureUnsupported;
  return cudaMemsetAsync(dst, value, bytes, nullptr);
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s) {
  if (!emu::is_device_range(dst, bytes))
    return fail(cudaErrorInvalidValue, "cudaMemset of " + std::to_string(bytes) +
                                           " bytes: not a device range");
  return emu::stream_op(s, [dst, value, bytes] { std::memset(dst, value, bytes); });
}
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* p) {
  *a = {};
  if (emu::is_device_range(p, 0)) {
    a->type = cudaMemoryTypeDevice;
    a->devicePointer = const_cast<void*>(p);
  } else {
    a->hostPointer = const_cast<void*>(p);
  }
  return cudaSuccess;
}

// ---- streams, events, graphs
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = new CUstream_st;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (s && s->capturing) return fail(cudaErrorInvalidValue, "cudaStreamDestroy of a capturing stream");
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (capture_forbids("cudaStreamSynchronize")) return cudaErrorStreamCaptureUnsupported;
  (void)s;
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  return emu::stream_op(s, [e] { e->at = std::chrono::steady_clock::now(); });
}
cudaError_t cudaEventSynchronize(cudaEvent_t) {
  if (capture_forbids("cudaEventSynchronize")) return cudaErrorStreamCaptureUnsupported;
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  if (capture_forbids("cudaDeviceSynchronize")) return cudaErrorStreamCaptureUnsupported;
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = t_last;
  t_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return t_last; }
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorCooperativeLaunchTooLarge: return "cudaErrorCooperativeLaunchTooLarge";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    default: return "cudaErrorUnknown";
  }
}
const char* cudaGetErrorString(cudaError_t e) {
  // The emulator's last message says what and where (the kernel, the thread, the range).
  if (e != cudaSuccess && !t_last_message.empty()) return t_last_message.c_str();
  return cudaGetErrorName(e);
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  if (!s) return fail(cudaErrorInvalidValue, "cudaStreamBeginCapture on the legacy default stream");
  if (t_capture) return fail(cudaErrorInvalidValue, "cudaStreamBeginCapture inside another capture");
  s->capturing = true;
  s->invalidated = false;
  s->ops.clear();
  t_capture = s;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  *g = nullptr;
  if (!s || !s->capturing) return fail(cudaErrorInvalidValue, "cudaStreamEndCapture without a capture");
  s->capturing = false;
  t_capture = nullptr;
  if (s->invalidated) {
    s->ops.clear();
    return fail(cudaErrorStreamCaptureInvalidated, "the stream capture was invalidated");
  }
  *g = new CUgraph_st{std::move(s->ops)};
  s->ops.clear();
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) {
  *e = new CUgraphExec_st{g->ops};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
  return emu::stream_op(s, [e] {
    for (auto& op : e->ops) op();
  });
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}

// ---- cuBLAS (column-major, C = alpha op(A) op(B) + beta C; beta == 0 ignores C)
namespace {
float round_input(float v, cublasComputeType_t ct) {
  switch (ct) {
    case CUBLAS_COMPUTE_32F_FAST_16F: return float(__half(v));
    case CUBLAS_COMPUTE_32F_FAST_16BF: return float(__nv_bfloat16(v));
    case CUBLAS_COMPUTE_32F_FAST_TF32: return emu::tf32_round(v);
    default: return v;
  }
}
void gemm_ref(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
              const float* A, int lda, long long sa, const float* B, int ldb, long long sb,
              float beta, float* C, int ldc, long long sc, int batch, cublasComputeType_t ct) {
  for (int p = 0; p < batch; ++p) {
    const float* a = A + p * sa;
    const float* b = B + p * sb;
    float* c = C + p * sc;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        double acc = 0;
        for (int l = 0; l < k; ++l) {
          const float av = ta == CUBLAS_OP_N ? a[i + size_t(l) * lda] : a[l + size_t(i) * lda];
          const float bv = tb == CUBLAS_OP_N ? b[l + size_t(j) * ldb] : b[j + size_t(l) * ldb];
          acc += double(round_input(av, ct)) * double(round_input(bv, ct));
        }
        float& out = c[i + size_t(j) * ldc];
        out = float(alpha * acc) + (beta == 0.f ? 0.f : beta * out);
      }
  }
}
}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
  h->math = m;
  return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusName(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_INVALID_VALUE";
}
const char* cublasGetStatusString(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS ? "success" : "an invalid value (CUDA emulator)";
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta,
                                         cublasOperation_t tb, int m, int n, int k,
                                         const float* alpha, const float* A, int lda,
                                         long long sa, const float* B, int ldb, long long sb,
                                         const float* beta, float* C, int ldc, long long sc,
                                         int batch) {
  const cublasComputeType_t ct =
      h->math == CUBLAS_TF32_TENSOR_OP_MATH ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  if (!emu::is_device_range(C, 0) || !emu::is_device_range(A, 0) || !emu::is_device_range(B, 0))
    return CUBLAS_STATUS_INVALID_VALUE;
  const float al = *alpha, be = *beta;
  emu::stream_op(h->stream, [=] {
    gemm_ref(ta, tb, m, n, k, al, A, lda, sa, B, ldb, sb, be, C, ldc, sc, batch, ct);
  });
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float* alpha, const float* A, int lda,
                           const float* B, int ldb, const float* beta, float* C, int ldc) {
  return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc,
                                   0, 1);
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void* alpha, const void* A, cudaDataType at,
                                          int lda, long long sa, const void* B, cudaDataType bt,
                                          int ldb, long long sb, const void* beta, void* C,
                                          cudaDataType ct, int ldc, long long sc, int batch,
                                          cublasComputeType_t compute, cublasGemmAlgo_t) {
  if (at != CUDA_R_32F || bt != CUDA_R_32F || ct != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const auto* a = static_cast<const float*>(A);
  const auto* b = static_cast<const float*>(B);
  auto* c = static_cast<float*>(C);
  emu::stream_op(h->stream, [=] {
    gemm_ref(ta, tb, m, n, k, al, a, lda, sa, b, ldb, sb, be, c, ldc, sc, batch, compute);
  });
  return CUBLAS_STATUS_SUCCESS;
}
