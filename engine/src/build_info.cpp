#include "dofpose/build_info.h"

#include <thread>

#include "build_config.h"
#include "dofpose/cuda_backend.h"
#include "dofpose/error.h"
#ifdef DOFPOSE_WITH_OPENMP
#include <omp.h>
#endif

namespace dofpose {

int cpu_threads() {
#ifdef DOFPOSE_WITH_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void set_cpu_threads(int n) {
  DOFPOSE_CHECK(n >= 0 && n <= kMaxCpuThreads, "CPU threads: expected 1 to ", kMaxCpuThreads,
                " (0 = all cores), got ", n);
#ifdef DOFPOSE_WITH_OPENMP
  omp_set_num_threads(n > 0 ? n : int(std::thread::hardware_concurrency()));
#else
  (void)n;
#endif
}

BuildInfo build_info() {
  BuildInfo b;
  b.version = DOFPOSE_VERSION;
  b.build_type = DOFPOSE_BUILD_TYPE;
  b.build_date = DOFPOSE_BUILD_DATE;
  b.compiler = DOFPOSE_CXX_COMPILER;
#if defined(__AVX512F__)
  b.simd = "AVX-512";
#elif defined(__AVX2__) && defined(__FMA__)
  b.simd = "AVX2+FMA";
#elif defined(__SSE2__)
  b.simd = "SSE2";
#else
  b.simd = "portable";
#endif
  b.cpu_threads = cpu_threads();
#ifdef DOFPOSE_WITH_OPENMP
  b.openmp = true;
#endif
  b.cuda_built = cuda::built();
  if (b.cuda_built) {
    b.cuda_archs = DOFPOSE_CUDA_ARCHS;
    b.cuda_compiler = DOFPOSE_CUDA_COMPILER;
  }
  b.cuda_runtime = cuda::runtime_version();
  b.cuda_devices = cuda::device_count();
  return b;
}

}  // namespace dofpose
