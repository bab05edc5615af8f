// device_peak(): the theoretical peaks the kernel benchmarks report against,
// checked against the vendors' published figures for three data-centre GPUs
// (their traits as the CUDA runtime reports them).
#include <doctest/doctest.h>

#include "dofpose/cuda_backend.h"
#include "dofpose/device_peak.h"

using namespace dofpose;

namespace {

DeviceTraits traits(int major, int minor, int sms, double sm_mhz, double mem_mhz, int bus_bits) {
  DeviceTraits t;
  t.cc_major = major;
  t.cc_minor = minor;
  t.multiprocessors = sms;
  t.sm_clock_khz = sm_mhz * 1e3;
  t.mem_clock_khz = mem_mhz * 1e3;
  t.mem_bus_bits = bus_bits;
  return t;
}

}  // namespace

TEST_CASE("device_peak: published peaks of V100, A100 and H100 from their traits") {
  // Published (dense): V100 SXM2 15.7 TFLOP/s FP32, 125 FP16 tensor, 900 GB/s.
  const DevicePeak v100 = device_peak(traits(7, 0, 80, 1530, 877, 4096));
  CHECK(v100.fp32_gflops == doctest::Approx(15700).epsilon(0.01));
  CHECK(v100.fp16_gflops == doctest::Approx(125000).epsilon(0.01));
  CHECK(v100.tf32_gflops == 0);  // no TF32 before Ampere
  CHECK(v100.dram_gbps == doctest::Approx(900).epsilon(0.01));
  // A100 40 GB SXM: 19.5 FP32, 156 TF32, 312 FP16/BF16, 1555 GB/s.
  const DevicePeak a100 = device_peak(traits(8, 0, 108, 1410, 1215, 5120));
  CHECK(a100.fp32_gflops == doctest::Approx(19500).epsilon(0.01));
  CHECK(a100.tf32_gflops == doctest::Approx(156000).epsilon(0.01));
  CHECK(a100.fp16_gflops == doctest::Approx(312000).epsilon(0.01));
  CHECK(a100.dram_gbps == doctest::Approx(1555).epsilon(0.01));
  // H100 SXM: 67 FP32, 495 TF32, 989 FP16 at the 1.83 GHz of the data sheet;
  // the driver reports 1.98 GHz, so the computed peaks are 8 % above those.
  const DevicePeak h100_sheet = device_peak(traits(9, 0, 132, 1830, 2619, 5120));
  CHECK(h100_sheet.fp32_gflops == doctest::Approx(61800).epsilon(0.01));  // 67 is at 1.98 GHz
  CHECK(h100_sheet.tf32_gflops == doctest::Approx(494700).epsilon(0.01));
  CHECK(h100_sheet.fp16_gflops == doctest::Approx(989400).epsilon(0.01));
  CHECK(h100_sheet.dram_gbps == doctest::Approx(3352).epsilon(0.01));
  const DevicePeak h100 = device_peak(traits(9, 0, 132, 1980, 2619, 5120));
  CHECK(h100.fp32_gflops == doctest::Approx(66900).epsilon(0.01));
}

TEST_CASE("device_peak: an unknown architecture has unknown FLOP peaks, not wrong ones") {
  const DevicePeak p = device_peak(traits(12, 0, 100, 2000, 1000, 4096));
  CHECK(p.fp32_gflops == 0);
  CHECK(p.tf32_gflops == 0);
  CHECK(p.fp16_gflops == 0);
  CHECK(p.dram_gbps == doctest::Approx(1024));  // still known: 2 * 1 GHz * 512 bytes
  CHECK(describe(p).find("FP32 unknown") != std::string::npos);
  CHECK(describe(device_peak(traits(9, 0, 132, 1980, 2619, 5120))).find("FP32 66.9 TFLOP/s") !=
        std::string::npos);
  if (!cuda::built()) {  // the runtime query says what is missing instead of guessing
    bool threw = false;
    try {
      cuda::device_traits(0);
    } catch (const std::exception& e) {
      threw = std::string(e.what()).find("device_traits") != std::string::npos;
    }
    CHECK(threw);
  }
}
