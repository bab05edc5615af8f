// What this build of dofpose is: version, compiler, SIMD level, threads, CUDA.
#pragma once
#include <string>

namespace dofpose {

struct BuildInfo {
  std::string version, build_type, build_date, compiler;
  std::string simd;        // "AVX-512", "AVX2+FMA", "SSE2", "portable"
  int cpu_threads = 1;     // threads the CPU kernels use
  bool openmp = false;
  bool cuda_built = false;
  std::string cuda_archs;  // "80;90" when built with CUDA
  std::string cuda_compiler, cuda_runtime;
  int cuda_devices = 0;
};

BuildInfo build_info();
// Threads used by the CPU kernels (default: all cores).
int cpu_threads();
// Most CPU threads one may ask for: OpenMP (libgomp) crashes when it cannot
// create the threads of a huge request, so it is refused before it gets there.
constexpr int kMaxCpuThreads = 1024;
// n = 0: all cores; 1..kMaxCpuThreads: that many; anything else throws.
void set_cpu_threads(int n);

}  // namespace dofpose
