#include "dofpose/device_peak.h"

#include <cstdio>

namespace dofpose {

namespace {

// FLOP per clock per multiprocessor (dense) by architecture.
struct Rates {
  int major, minor;
  double fp32, tf32, fp16;
};
constexpr Rates kRates[] = {
    {7, 0, 128, 0, 1024},     // V100: 64 FP32 cores/SM, first-generation tensor cores
    {7, 5, 128, 0, 512},      // T4 / RTX 20
    {8, 0, 128, 1024, 2048},  // A100
    {8, 6, 256, 512, 1024},   // A10 / A40 / RTX 30 (data-centre rates)
    {8, 7, 256, 512, 1024},   // Jetson Orin
    {8, 9, 256, 512, 1024},   // L4 / L40 / RTX 40 (data-centre rates)
    {9, 0, 256, 2048, 4096},  // H100 / H200
};

}  // namespace

DevicePeak device_peak(const DeviceTraits& t) {
  DevicePeak p;
  const double clocks = t.multiprocessors * t.sm_clock_khz * 1e3;  // SM-cycles per second
  for (const Rates& r : kRates)
    if (r.major == t.cc_major && r.minor == t.cc_minor) {
      p.fp32_gflops = r.fp32 * clocks * 1e-9;
      p.tf32_gflops = r.tf32 * clocks * 1e-9;
      p.fp16_gflops = r.fp16 * clocks * 1e-9;
    }
  p.dram_gbps = 2.0 * t.mem_clock_khz * 1e3 * (t.mem_bus_bits / 8.0) * 1e-9;
  return p;
}

std::string describe(const DevicePeak& p) {
  auto rate = [](double gflops) {
    char b[32];
    if (gflops > 0) std::snprintf(b, sizeof b, "%.1f TFLOP/s", gflops * 1e-3);
    else std::snprintf(b, sizeof b, "unknown");
    return std::string(b);
  };
  char mem[32];
  std::snprintf(mem, sizeof mem, "%.2f TB/s", p.dram_gbps * 1e-3);
  return "FP32 " + rate(p.fp32_gflops) + ", TF32 " + rate(p.tf32_gflops) + ", FP16/BF16 " +
         rate(p.fp16_gflops) + ", DRAM " + mem;
}

}  // namespace dofpose
