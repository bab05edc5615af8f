// GPU-session tooling, checked without a GPU. bench/gpu_verdicts.py decides,
// after a GPU session, which default-off CUDA paths to turn on: checked on
// made-up benchmark JSON (rows paired by their switch argument, speed-up and
// verdict right, a path whose rows are missing or failed says so instead of
// being judged). And the multi-stage mma.sync kernel, replayed on the host
// against the PTX fragment layouts.
#include <doctest/doctest.h>

#include <fstream>

#include "tests/test_util.h"

using namespace dofpose_test;

namespace {

std::string row(const std::string& name, double us, bool error = false) {
  std::string r = R"({"name": ")" + name + R"(", "run_name": ")" + name +
                  R"(", "run_type": "iteration", "real_time": )" + std::to_string(us) +
                  R"(, "time_unit": "us")";
  if (error) r += R"(, "error_occurred": true)";
  return r + "}";
}

std::string line_with(const std::string& text, const std::string& key) {
  const size_t at = text.find(key);
  if (at == std::string::npos) return "";
  const size_t end = text.find('\n', at);
  return text.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

}  // namespace

TEST_CASE("gpu_verdicts.py pairs each default-off switch with its default path and judges the speed-up") {
  TempDir dir("verdicts");
  const std::string json = dir.file("bench.json");
  {
    std::ofstream f(json);
    f << R"({"context": {}, "benchmarks": [)"
      << row("BM_cuda_persistent_lifter/progressive:0/width:1024/launch:0/manual_time", 36.0) << ","
      << row("BM_cuda_persistent_lifter/progressive:0/width:1024/launch:1/manual_time", 40.0) << ","
      << row("BM_cuda_persistent_lifter/progressive:0/width:1024/launch:2/manual_time", 18.0) << ","
      << row("BM_cuda_persistent_lifter/progressive:1/width:256/launch:0/manual_time", 142.0) << ","
      << row("BM_cuda_persistent_lifter/progressive:1/width:256/launch:2/manual_time", 141.0) << ","
      << row("BM_cuda_conv2d_forward/N:1/C:3/H:256/K:64/R:7/mode:0/manual_time", 26.5) << ","
      << row("BM_cuda_conv2d_forward/N:1/C:3/H:256/K:64/R:7/mode:3/manual_time", 30.0, true)
      << "]}";
  }
  const std::string out = run_python(std::string(DOFPOSE_SOURCE_DIR) + "/bench/gpu_verdicts.py", {json});
  INFO(out);
  const size_t cluster = out.find("one-cluster lifter");
  const size_t prefetch = out.find("prefetching lifter");
  const size_t fused = out.find("fused BN->ReLU->Dropout");
  REQUIRE(cluster != std::string::npos);
  REQUIRE(prefetch != std::string::npos);
  REQUIRE(fused != std::string::npos);
  const std::string cluster_part = out.substr(cluster, prefetch - cluster);
  const std::string prefetch_part = out.substr(prefetch, fused - prefetch);
  // Prefetching lifter: 36 -> 18 us is twice as fast; 142 -> 141 us is within 3 %.
  const std::string fast = line_with(prefetch_part, "progressive:0/width:1024/");
  CHECK(fast.find("x 2.00") != std::string::npos);
  CHECK(fast.find("faster") != std::string::npos);
  const std::string same = line_with(prefetch_part, "progressive:1/width:256/");
  CHECK(same.find("same") != std::string::npos);
  // The cluster row at width 1024 is slower (36 -> 40 us); it has no progressive:1 twin.
  CHECK(line_with(cluster_part, "progressive:0/width:1024/").find("slower") != std::string::npos);
  CHECK(cluster_part.find("progressive:1") == std::string::npos);
  // The stem kernel's only candidate row failed: no verdict, said so.
  const std::string stem = out.substr(out.find("stem kernel"));
  CHECK(stem.substr(0, stem.find('\n', stem.find('\n') + 1)).find("no pairs in this run") != std::string::npos);
}

TEST_CASE("gpu_verdicts.py pairs a candidate kept in another benchmark (16-bit activation tensors)") {
  TempDir dir("verdicts16");
  const std::string json = dir.file("bench.json");
  std::ofstream(json) << R"({"context": {}, "benchmarks": [)"
                      << row("BM_cuda_fused_bottleneck_conv/N:64/conv:2/math:2/manual_time", 100.0) << ","
                      << row("BM_cuda_fused_bottleneck_conv/N:64/conv:3/math:2/manual_time", 80.0) << ","
                      << row("BM_cuda_fused_bottleneck_conv16/N:64/conv:2/act:1/manual_time", 50.0) << ","
                      << row("BM_cuda_fused_bottleneck_conv16/N:64/conv:2/act:2/manual_time", 40.0) << ","
                      << row("BM_cuda_fused_bottleneck_conv/N:1/conv:2/math:2/manual_time", 10.0)
                      << "]}";
  const std::string out = run_python(std::string(DOFPOSE_SOURCE_DIR) + "/bench/gpu_verdicts.py", {json});
  INFO(out);
  const size_t at = out.find("16-bit activation tensors");
  REQUIRE(at != std::string::npos);
  const std::string part = out.substr(at);
  CHECK(part.find("BM_cuda_fused_bottleneck_conv16 act:1") != std::string::npos);
  // N:64 conv:2 pairs with act:1 (100 -> 50 us, not act:2's 40); conv:3 and
  // N:1 have no 16-bit twin and are left out.
  const std::string pair = line_with(part, "N:64/conv:2");
  CHECK(pair.find("x 2.00") != std::string::npos);
  CHECK(pair.find("faster") != std::string::npos);
  CHECK(part.find("conv:3") == std::string::npos);
  CHECK(part.find("N:1/") == std::string::npos);
}

TEST_CASE("gpu_verdicts.py keeps the complete rows of a benchmark file cut off by its time limit") {
  TempDir dir("verdicts_cut");
  const std::string json = dir.file("cut.json");
  std::ofstream(json) << R"({"context": {}, "benchmarks": [)" << "\n"
                      << row("BM_cuda_persistent_lifter/progressive:0/width:256/launch:0/manual_time", 30.0) << ",\n"
                      << row("BM_cuda_persistent_lifter/progressive:0/width:256/launch:2/manual_time", 20.0) << ",\n"
                      << R"({"name": "BM_cuda_persistent_lifter/progressive:0/width:512/launch:0/manual_time", "real_ti)";
  const std::string out = run_python(std::string(DOFPOSE_SOURCE_DIR) + "/bench/gpu_verdicts.py", {json});
  INFO(out);
  CHECK(out.find("unfinished") != std::string::npos);  // and says how many rows it kept
  const std::string line = line_with(out.substr(out.find("prefetching lifter")), "width:256/");
  CHECK(line.find("x 1.50") != std::string::npos);
  CHECK(out.find("width:512") == std::string::npos);
}

TEST_CASE("gpu_verdicts.py names the file it cannot read") {
  TempDir dir("verdicts_bad");
  const std::string json = dir.file("broken.json");
  std::ofstream(json) << "{ not json";
  std::string out;
  const int rc = run_command(shell_quote(DOFPOSE_PYTHON) + " " +
                                 shell_quote(std::string(DOFPOSE_SOURCE_DIR) + "/bench/gpu_verdicts.py") +
                                 " " + shell_quote(json) + " 2>&1",
                             &out);
  CHECK(rc != 0);
  CHECK(out.find("broken.json") != std::string::npos);
}

// The multi-stage mma.sync kernel replayed on the host (stage ring, zero
// fill, fragments through the PTX layouts, epilogue staging and guards) for
// FP16/BF16 and TF32 inputs, 15 cases each over the three tile shapes (two
// with the fused conv's B prologue), and
// its fragment reads checked for bank conflicts: tests/mma_fragment_emulation.py.
TEST_CASE("mma_async_tile_kernel's offsets, stage ring and epilogue reproduce A x B (host emulation)") {
  const std::string out =
      run_python(std::string(DOFPOSE_SOURCE_DIR) + "/tests/mma_fragment_emulation.py", {});
  INFO(out);
  int cases = 0;
  for (size_t at = out.find("max |C - A B|"); at != std::string::npos; at = out.find("max |C - A B|", at + 1)) {
    const size_t end = out.find('\n', at);
    const std::string line = out.substr(at, end == std::string::npos ? std::string::npos : end - at);
    CHECK_MESSAGE(line.size() > 3, line);
    CHECK(line.substr(line.size() - 3) == " ok");
    ++cases;
  }
  CHECK(cases == 30);  // 15 per input kind (2 with a B prologue)
  for (const char* kind : {"fp16/bf16 ", "tf32 "})
    for (const char* tile : {"tile 64x64", "tile 64x128", "tile 128x64"})
      CHECK_MESSAGE(out.find(std::string(kind) + tile + ": fragment reads conflict-free") != std::string::npos,
                    kind << tile);
  CHECK(out.find("MISMATCH") == std::string::npos);
  CHECK(out.find("BANK CONFLICT") == std::string::npos);
}
