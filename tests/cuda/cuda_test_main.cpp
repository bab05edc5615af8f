// The CUDA test binary's entry point. Without a CUDA device it prints why and
// exits 77, which ctest reports as skipped (never a silent pass).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "dofpose/cuda_backend.h"
#include "dofpose/ops.h"

int main(int argc, char** argv) {
  if (!dofpose::cuda::built()) {
    std::printf("SKIPPED: this build has no CUDA backend\n");
    return 77;
  }
  if (dofpose::cuda::device_count() == 0) {
    std::printf("SKIPPED: no CUDA device found; the CUDA backend tests need a GPU "
                "(run tests/gpu.sh on a machine with one)\n");
    return 77;
  }
  std::printf("CUDA device 0: %s, runtime %s\n", dofpose::cuda::device_name(0).c_str(),
              dofpose::cuda::runtime_version().c_str());
  // The CPU reference of every parity case is the direct convolution: the
  // CPU's Winograd path has its own tests (tests/test_conv_winograd.cpp, against
  // float64), and the tolerances here are for the CUDA kernels alone.
  dofpose::ops::set_cpu_conv_algorithm(dofpose::ops::CpuConvAlgorithm::Direct);
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  return context.run();
}
