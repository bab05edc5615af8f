// A GPU's theoretical peaks, from its compute capability, multiprocessor
// count and clocks: what the kernel benchmarks (bench/) report their achieved
// GFLOP/s and GB/s against. A pure function of DeviceTraits (testable without
// a GPU); cuda::device_traits() reads the traits of a real device.
#pragma once
#include <string>

namespace dofpose {

struct DeviceTraits {
  int cc_major = 0, cc_minor = 0;  // compute capability, e.g. 9.0
  int multiprocessors = 0;
  double sm_clock_khz = 0;   // the maximum SM clock the driver reports
  double mem_clock_khz = 0;  // the memory clock (data moves on both edges)
  int mem_bus_bits = 0;
};

// Dense (no sparsity) peaks; 0 where the architecture is not in the table or
// lacks the unit (no TF32 before sm_80). Tensor-core rates are the
// data-centre parts' FP32-accumulate rates (sm_80 A100, sm_90 H100/H200);
// consumer parts of the same family may run FP16 with FP32 accumulation at
// half of what is given for sm_86/sm_89.
struct DevicePeak {
  double fp32_gflops = 0;  // FMA on the CUDA cores (2 FLOP each)
  double tf32_gflops = 0;  // tensor cores, TF32 inputs
  double fp16_gflops = 0;  // tensor cores, FP16/BF16 inputs, FP32 accumulation
  double dram_gbps = 0;    // 2 * memory clock * bus width / 8
};

DevicePeak device_peak(const DeviceTraits& t);
std::string describe(const DevicePeak& p);  // "FP32 66.9 TFLOP/s, TF32 ..., DRAM 4.8 TB/s"

}  // namespace dofpose
