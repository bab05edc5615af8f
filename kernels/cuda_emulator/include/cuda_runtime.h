// The CUDA host emulator's stand-in for <cuda_runtime.h>: the subset of the
// CUDA language and runtime API that kernels/cuda/ uses, for g++ on a machine
// without a GPU. The .cu sources are compiled unchanged except for what
// kernels/cuda_emulator/translate_cu.py rewrites (kernel launches and
// __shared__ declarations). Not a general CUDA implementation.
#pragma once
#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "kernels/cuda_emulator/emulator.h"

#define DOFPOSE_CUDA_EMULATOR 1
#define __CUDA_ARCH__ 900  // the device code's sm_90 paths, with emulated PTX where it has any
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __constant__

// ---- vector types
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  dim3(const emu::Dim3& d) : x(d.x), y(d.y), z(d.z) {}
  operator emu::Dim3() const { return {x, y, z}; }
};
using uint3 = emu::Dim3;
// A copy of a vector is one access of all of it (memcpy), as the GPU's 64- and
// 128-bit loads and stores are: g++ would otherwise split it into scalar
// accesses, and the memory profile would count four requests where there is one.
#define EMU_VECTOR_COPY(T)                                                                      \
  T() = default;                                                                                \
  T(const T& o) { std::memcpy(static_cast<void*>(this), &o, sizeof(T)); }                     \
  T& operator=(const T& o) {                                                                    \
    std::memcpy(static_cast<void*>(this), &o, sizeof(T));                                       \
    return *this;                                                                               \
  }
struct __align__(8) float2 {
  float x, y;
  EMU_VECTOR_COPY(float2)
  constexpr float2(float a, float b) : x(a), y(b) {}
};
struct __align__(16) float4 {
  float x, y, z, w;
  EMU_VECTOR_COPY(float4)
  constexpr float4(float a, float b, float c, float d) : x(a), y(b), z(c), w(d) {}
};
struct __align__(8) int2 {
  int x, y;
  EMU_VECTOR_COPY(int2)
  constexpr int2(int a, int b) : x(a), y(b) {}
};
struct __align__(16) int4 {
  int x, y, z, w;
  EMU_VECTOR_COPY(int4)
  constexpr int4(int a, int b, int c, int d) : x(a), y(b), z(c), w(d) {}
};
struct __align__(16) double2 {
  double x, y;
  EMU_VECTOR_COPY(double2)
  constexpr double2(double a, double b) : x(a), y(b) {}
};
#undef EMU_VECTOR_COPY
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }

// ---- the thread's coordinates
// (threadIdx, blockIdx, blockDim, gridDim: thread_local globals the scheduler
// sets before it resumes a fiber; declared in emulator.h)
constexpr int warpSize = 32;

// ---- barriers and warp collectives
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::sync_block(file, line);  // the caller's line: the race check's divergent-barrier test
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::sync_warp(mask); }
[[noreturn]] inline void __trap() { emu::trap("__trap()"); }

namespace emu {
enum class Shfl { Idx, Xor, Down, Up };
template <class T>
struct ShflIO {
  T in, out;
};
template <class T, Shfl K>
void shfl_combine(WarpPart* const* lanes) {
  for (int l = 0; l < 32; ++l) {
    if (!lanes[l]) continue;
    const int w = lanes[l]->width, base = l & ~(w - 1), arg = lanes[l]->src;
    int s = l;
    switch (K) {
      case Shfl::Idx: s = base + (arg % w); break;
      case Shfl::Xor: s = l ^ arg; if (s >= base + w) s = l; break;
      case Shfl::Down: s = l + arg; if (s >= base + w) s = l; break;
      case Shfl::Up: s = l - arg; if (s < base) s = l; break;
    }
    const WarpPart* src = (s >= 0 && s < 32 && lanes[s]) ? lanes[s] : lanes[l];
    static_cast<ShflIO<T>*>(lanes[l]->out)->out = static_cast<const ShflIO<T>*>(src->in)->in;
  }
}
template <Shfl K, class T>
T shfl(unsigned mask, T v, int arg, int width) {
  ShflIO<T> io{v, v};
  WarpPart part;
  part.combine = &shfl_combine<T, K>;
  part.mask = mask;
  part.in = &io;
  part.out = &io;
  part.src = arg;
  part.width = width;
  warp_collective(part);
  return io.out;
}
}  // namespace emu
template <class T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  return emu::shfl<emu::Shfl::Idx>(mask, v, src, width);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return emu::shfl<emu::Shfl::Xor>(mask, v, lane_mask, width);
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return emu::shfl<emu::Shfl::Down>(mask, v, int(delta), width);
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return emu::shfl<emu::Shfl::Up>(mask, v, int(delta), width);
}

// ---- loads and arithmetic intrinsics (IEEE where CUDA's are; the host's libm elsewhere)
template <class T>
inline T __ldg(const T* p) { return *p; }
template <class T>
inline T __ldcg(const T* p) { return *p; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline unsigned __float_as_uint(float x) { unsigned u; std::memcpy(&u, &x, 4); return u; }
inline float __uint_as_float(unsigned u) { float x; std::memcpy(&x, &u, 4); return x; }
inline int __float_as_int(float x) { int u; std::memcpy(&u, &x, 4); return u; }
inline float __int_as_float(int u) { float x; std::memcpy(&x, &u, 4); return x; }
using std::isfinite;  // CUDA declares these in the global namespace
using std::isinf;
using std::isnan;
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }

// ---- the runtime API
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
  cudaErrorCooperativeLaunchTooLarge = 720,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorUnknown = 999,
};
using cudaError = cudaError_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaMemoryType {
  cudaMemoryTypeUnregistered = 0,
  cudaMemoryTypeHost = 1,
  cudaMemoryTypeDevice = 2,
  cudaMemoryTypeManaged = 3,
};
struct cudaPointerAttributes {
  cudaMemoryType type = cudaMemoryTypeUnregistered;
  int device = 0;
  void* devicePointer = nullptr;
  void* hostPointer = nullptr;
};
enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrClockRate = 13,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrMemoryClockRate = 36,
  cudaDevAttrGlobalMemoryBusWidth = 37,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrCooperativeLaunch = 95,
};
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int major, minor;
  int multiProcessorCount;
  int clockRate;
  int memoryClockRate;
  int memoryBusWidth;
  int cooperativeLaunch;
};
struct cudaFuncAttributes {
  int binaryVersion = 0, ptxVersion = 0, maxThreadsPerBlock = 0, numRegs = 0;
  size_t sharedSizeBytes = 0, localSizeBytes = 0;
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributeNonPortableClusterSizeAllowed = 12,
};
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDefault = 0, cudaEventDisableTiming = 2;

struct CUstream_st;
struct CUevent_st;
struct CUgraph_st;
struct CUgraphExec_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;
using cudaGraph_t = CUgraph_st*;
using cudaGraphExec_t = CUgraphExec_st*;

enum cudaLaunchAttributeID { cudaLaunchAttributeClusterDimension = 4 };
struct cudaLaunchAttributeValue {
  struct {
    unsigned x, y, z;
  } clusterDim;
};
struct cudaLaunchAttribute {
  cudaLaunchAttributeID id;
  cudaLaunchAttributeValue val;
};
struct cudaLaunchConfig_t {
  dim3 gridDim, blockDim;
  size_t dynamicSmemBytes = 0;
  cudaStream_t stream = nullptr;
  cudaLaunchAttribute* attrs = nullptr;
  unsigned numAttrs = 0;
};

cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d);
cudaError_t cudaRuntimeGetVersion(int* v);
cudaError_t cudaDriverGetVersion(int* v);
cudaError_t cudaMalloc(void** p, size_t bytes);
template <class T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s = nullptr);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* p);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t e);
const char* cudaGetErrorName(cudaError_t e);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);
cudaError_t cudaGraphDestroy(cudaGraph_t g);

namespace emu {
constexpr int kEmulatedSMs = 8;  // few, so persistent grids stay small on the host
constexpr int kMaxThreadsPerSM = 2048;

struct LaunchConfig {
  dim3 grid, block;
  size_t smem = 0;
  cudaStream_t stream = nullptr;
};
inline LaunchConfig config(dim3 g, dim3 b, size_t smem = 0, cudaStream_t s = nullptr) {
  return {g, b, smem, s};
}
// Runs (or, inside a stream capture, records) a launch; errors become the
// sticky launch error that cudaGetLastError reports.
void submit(const LaunchShape& shape, cudaStream_t stream, std::function<void()> body);
// Runs or records a host-side operation in stream order (copies, cuBLAS).
cudaError_t stream_op(cudaStream_t stream, std::function<void()> op);
// Whether [p, p + bytes) lies inside one device allocation (or a __device__ variable's storage).
bool is_device_range(const void* p, size_t bytes);
void set_error(cudaError_t e, const std::string& message);

// Kernel arguments that are pointers must point into device memory.
template <class T>
bool arg_ok(const T& v, std::string& why, int i) {
  if constexpr (std::is_pointer_v<T> && !std::is_function_v<std::remove_pointer_t<T>>) {
    if (v && !is_device_range(v, 0)) {
      why = "argument " + std::to_string(i) + " is not a device pointer";
      return false;
    }
  }
  (void)v, (void)why, (void)i;
  return true;
}
template <class Tuple, size_t... I>
bool args_ok(const Tuple& t, std::string& why, std::index_sequence<I...>) {
  return (arg_ok(std::get<I>(t), why, int(I)) && ...);
}

template <class... P>
cudaError_t launch_tuple(const char* name, void (*kernel)(P...),
                         std::shared_ptr<std::tuple<std::decay_t<P>...>> args, LaunchShape shape,
                         cudaStream_t stream) {
  std::string why;
  if (!args_ok(*args, why, std::index_sequence_for<P...>{})) {
    set_error(cudaErrorInvalidDevicePointer, std::string("kernel ") + name + ": " + why);
    return cudaErrorInvalidDevicePointer;
  }
  shape.name = name;
  submit(shape, stream, [kernel, args] { std::apply(kernel, *args); });
  return cudaSuccess;
}

// What translate_cu.py makes of `kernel<<<grid, block, smem, stream>>>(args...)`.
template <class... P, class... A>
void launch(const char* name, void (*kernel)(P...), const LaunchConfig& c, A&&... a) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with a wrong argument count");
  auto args = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(a)...);
  LaunchShape shape;
  shape.grid = c.grid;
  shape.block = c.block;
  shape.dynamic_smem = c.smem;
  launch_tuple(name, kernel, std::move(args), shape, c.stream);
}

template <class... P, size_t... I>
auto unpack_args(void** args, std::index_sequence<I...>) {
  return std::make_shared<std::tuple<std::decay_t<P>...>>(
      *static_cast<std::decay_t<P>*>(args[I])...);
}
int blocks_per_sm(int threads_per_block);

// What translate_cu.py makes of cudaLaunchCooperativeKernel / cudaLaunchKernelEx (named kernels).
template <class... P>
cudaError_t cooperative_launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block,
                               void** args, size_t smem = 0, cudaStream_t stream = nullptr) {
  const int threads = int(block.x * block.y * block.z);
  if (int(grid.x * grid.y * grid.z) > emu::blocks_per_sm(threads) * emu::kEmulatedSMs) {
    emu::set_error(cudaErrorCooperativeLaunchTooLarge, "cooperative grid larger than co-resident blocks");
    return cudaErrorCooperativeLaunchTooLarge;
  }
  emu::LaunchShape shape;
  shape.grid = grid;
  shape.block = block;
  shape.dynamic_smem = smem;
  shape.cooperative = true;
  return launch_tuple(name, kernel, unpack_args<P...>(args, std::index_sequence_for<P...>{}), shape,
                      stream);
}

template <class... P, class... A>
cudaError_t launch_ex(const char* name, const cudaLaunchConfig_t* cfg, void (*kernel)(P...), A&&... a) {
  LaunchShape shape;
  shape.grid = cfg->gridDim;
  shape.block = cfg->blockDim;
  shape.dynamic_smem = cfg->dynamicSmemBytes;
  for (unsigned i = 0; i < cfg->numAttrs; ++i)
    if (cfg->attrs[i].id == cudaLaunchAttributeClusterDimension) {
      const auto& d = cfg->attrs[i].val.clusterDim;
      shape.cluster = {d.x, d.y, d.z};
    }
  if (shape.cluster.x * shape.cluster.y * shape.cluster.z > 16) return cudaErrorInvalidConfiguration;
  auto args = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(a)...);
  return launch_tuple(name, kernel, std::move(args), shape, cfg->stream);
}
}  // namespace emu

template <class... P>
cudaError_t cudaLaunchCooperativeKernel(void (*kernel)(P...), dim3 grid, dim3 block, void** args,
                                        size_t smem = 0, cudaStream_t stream = nullptr) {
  return emu::cooperative_launch("cooperative kernel", kernel, grid, block, args, smem, stream);
}
template <class... P, class... A>
cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t* cfg, void (*kernel)(P...), A&&... a) {
  return emu::launch_ex("kernel (cudaLaunchKernelEx)", cfg, kernel, std::forward<A>(a)...);
}

template <class K>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, K, int threads, size_t = 0) {
  *n = emu::blocks_per_sm(threads);
  return cudaSuccess;
}
template <class K>
cudaError_t cudaOccupancyMaxActiveClusters(int* n, K, const cudaLaunchConfig_t* cfg) {
  int size = 1;
  for (unsigned i = 0; i < cfg->numAttrs; ++i)
    if (cfg->attrs[i].id == cudaLaunchAttributeClusterDimension)
      size = int(cfg->attrs[i].val.clusterDim.x * cfg->attrs[i].val.clusterDim.y *
                 cfg->attrs[i].val.clusterDim.z);
  *n = size <= 16 ? 1 : 0;
  return cudaSuccess;
}
template <class K>
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, K) {
  *a = {};
  a->binaryVersion = a->ptxVersion = 90;
  a->maxThreadsPerBlock = 1024;
  return cudaSuccess;
}
template <class K>
cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute, int) {
  return cudaSuccess;
}
// __device__ variables are host variables here.
template <class T>
cudaError_t cudaMemcpyFromSymbolAsync(void* dst, const T& symbol, size_t bytes, size_t offset = 0,
                                      cudaMemcpyKind = cudaMemcpyDeviceToHost,
                                      cudaStream_t s = nullptr) {
  const char* src = reinterpret_cast<const char*>(&symbol) + offset;
  return emu::stream_op(s, [dst, src, bytes] { std::memcpy(dst, src, bytes); });
}
template <class T>
cudaError_t cudaMemcpyFromSymbol(void* dst, const T& symbol, size_t bytes, size_t offset = 0,
                                 cudaMemcpyKind = cudaMemcpyDeviceToHost) {
  std::memcpy(dst, reinterpret_cast<const char*>(&symbol) + offset, bytes);
  return cudaSuccess;
}
