// Every CUDA call is checked; the error names the call, file and line.
#pragma once
#include <cuda_runtime.h>

#include "dofpose/cuda_backend.h"
#include "dofpose/error.h"

#define DOFPOSE_CUDA_CHECK(call)                                                              \
  do {                                                                                        \
    cudaError_t err_ = (call);                                                                \
    if (err_ != cudaSuccess)                                                                  \
      ::dofpose::fail("CUDA error ", cudaGetErrorName(err_), " (", cudaGetErrorString(err_), \
                      ") in ", #call, " at ", __FILE__, ":", __LINE__);                       \
  } while (0)

// After a kernel launch: launch errors always; in debug builds
// (DOFPOSE_CUDA_SYNC_CHECK) also synchronise so the failing kernel is named.
#ifdef DOFPOSE_CUDA_SYNC_CHECK
#define DOFPOSE_CUDA_LAUNCH_CHECK(name)                                            \
  do {                                                                             \
    DOFPOSE_CUDA_CHECK(cudaGetLastError());                                        \
    if (::dofpose::cuda::capturing()) break; /* no sync inside a graph capture */  \
    cudaError_t err_ = cudaDeviceSynchronize();                                    \
    if (err_ != cudaSuccess)                                                       \
      ::dofpose::fail("CUDA kernel ", name, " failed: ", cudaGetErrorString(err_), \
                      " at ", __FILE__, ":", __LINE__);                            \
  } while (0)
#else
#define DOFPOSE_CUDA_LAUNCH_CHECK(name) DOFPOSE_CUDA_CHECK(cudaGetLastError())
#endif
