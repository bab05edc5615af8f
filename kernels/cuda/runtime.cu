// The CUDA runtime wrapper (device memory, copies, streams), checked calls.
#include "dofpose/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"

#include <atomic>

namespace dofpose::cuda {

namespace {
cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }
std::atomic<int> g_captures{0};
}  // namespace

bool built() { return true; }

int device_count() {
  int n = 0;
  // No driver or no device is not an error here: it means "no GPU".
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error
    return 0;
  }
  return n;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  DOFPOSE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return concat(prop.name, " (sm_", prop.major, prop.minor, ", ",
                prop.totalGlobalMem >> 20, " MiB)");
}

DeviceTraits device_traits(int device) {
  DeviceTraits t;
  auto get = [&](cudaDeviceAttr a) {
    int v = 0;
    DOFPOSE_CUDA_CHECK(cudaDeviceGetAttribute(&v, a, device));
    return v;
  };
  t.cc_major = get(cudaDevAttrComputeCapabilityMajor);
  t.cc_minor = get(cudaDevAttrComputeCapabilityMinor);
  t.multiprocessors = get(cudaDevAttrMultiProcessorCount);
  t.sm_clock_khz = get(cudaDevAttrClockRate);
  t.mem_clock_khz = get(cudaDevAttrMemoryClockRate);
  t.mem_bus_bits = get(cudaDevAttrGlobalMemoryBusWidth);
  return t;
}

std::string runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return concat(v / 1000, ".", (v % 1000) / 10);
}

void* malloc(size_t bytes) {
  void* p = nullptr;
  DOFPOSE_CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 1));
  return p;
}

void free(void* p) {
  if (p) DOFPOSE_CUDA_CHECK(cudaFree(p));
}

void memcpy_h2d(void* dst, const void* src, size_t bytes, void* stream) {
  DOFPOSE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, as_stream(stream)));
  DOFPOSE_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
}

void upload_staged(void* dst, const void* src, size_t bytes, void* stream) {
  cudaPointerAttributes attr = {};
  const bool known = cudaPointerGetAttributes(&attr, src) == cudaSuccess;
  if (!known) cudaGetLastError();  // clear the query's own error (treated as page-locked: we wait)
  const bool pageable = known && attr.type == cudaMemoryTypeUnregistered;
  DOFPOSE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, as_stream(stream)));
  if (!pageable) DOFPOSE_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
}

void memcpy_d2h(void* dst, const void* src, size_t bytes, void* stream) {
  DOFPOSE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, as_stream(stream)));
  DOFPOSE_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
}

void memcpy_d2d(void* dst, const void* src, size_t bytes, void* stream) {
  // Stream-ordered: no host synchronisation (it may sit inside a forward pass).
  DOFPOSE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, as_stream(stream)));
}

void memset(void* dst, int value, size_t bytes, void* stream) {
  DOFPOSE_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, as_stream(stream)));
}

void graph_capture_begin(void* stream) {
  DOFPOSE_CHECK(stream, "cuda::graph_capture_begin: needs a created stream, not the default one");
  // Thread-local mode: other threads' CUDA calls are not affected by this capture.
  DOFPOSE_CUDA_CHECK(cudaStreamBeginCapture(as_stream(stream), cudaStreamCaptureModeThreadLocal));
  ++g_captures;
}

void* graph_capture_end(void* stream) {
  cudaGraph_t graph = nullptr;
  const cudaError_t err = cudaStreamEndCapture(as_stream(stream), &graph);
  --g_captures;
  if (err != cudaSuccess) {
    cudaGetLastError();
    fail("cuda::graph_capture_end: the capture failed (", cudaGetErrorString(err),
         "): something inside it synchronised the host or used another stream");
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t ierr = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  DOFPOSE_CUDA_CHECK(ierr);
  return exec;
}

void graph_launch(void* graph, void* stream) {
  DOFPOSE_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), as_stream(stream)));
}

void graph_destroy(void* graph) {
  if (graph) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph));
}

bool capturing() { return g_captures.load() > 0; }

void* stream_create() {
  cudaStream_t s = nullptr;
  DOFPOSE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

void stream_destroy(void* stream) {
  if (stream) DOFPOSE_CUDA_CHECK(cudaStreamDestroy(as_stream(stream)));
}

void stream_synchronize(void* stream) {
  DOFPOSE_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
}

void stream_wait(void* waiter, void* producer) {
  if (waiter == producer) return;
  // One event per thread and device, created once: a wait takes the event's
  // state when it is queued, so re-recording it for the next call is safe,
  // and the per-call cost stays two queue operations (GraphForward::run).
  constexpr int kMaxDevices = 64;
  thread_local cudaEvent_t events[kMaxDevices] = {};
  int dev = 0;
  DOFPOSE_CUDA_CHECK(cudaGetDevice(&dev));
  DOFPOSE_CHECK(dev < kMaxDevices, "stream_wait: device ", dev, " beyond ", kMaxDevices);
  cudaEvent_t& ev = events[dev];
  if (!ev) DOFPOSE_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  DOFPOSE_CUDA_CHECK(cudaEventRecord(ev, as_stream(producer)));
  DOFPOSE_CUDA_CHECK(cudaStreamWaitEvent(as_stream(waiter), ev, 0));
}

}  // namespace dofpose::cuda
