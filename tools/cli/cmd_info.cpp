// dofpose info: what this build is and what it can run on.
#include <cstdio>
#include <cstring>
#include <string>
#include <nlohmann/json.hpp>

#include "dofpose/build_info.h"
#include "dofpose/cuda_backend.h"
#include "tools/cli/commands.h"

namespace dofpose_cli {

int cmd_info(int argc, char** argv) {
  if (wants_help(argc, argv)) {
    std::printf("usage: dofpose info [--json]\n\nPrints the build configuration: version, compiler, SIMD level of the CPU\nkernels, threads, whether the CUDA backend is built and which devices it sees.\n");
    return 0;
  }
  bool json = false;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json")) throw UsageError(std::string("unknown option '") + argv[i] + "'");
    json = true;
  }
  dofpose::BuildInfo b = dofpose::build_info();
  std::vector<std::string> devices;
  for (int i = 0; i < b.cuda_devices; ++i) devices.push_back(dofpose::cuda::device_name(i));
  if (json) {
    nlohmann::json j = {{"version", b.version},         {"build_type", b.build_type},
                        {"build_date", b.build_date},   {"compiler", b.compiler},
                        {"simd", b.simd},               {"cpu_threads", b.cpu_threads},
                        {"openmp", b.openmp},           {"cuda_built", b.cuda_built},
                        {"cuda_archs", b.cuda_archs},   {"cuda_runtime", b.cuda_runtime},
                        {"cuda_devices", devices}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("dofpose %s (%s build, %s, %s)\n", b.version.c_str(), b.build_type.c_str(),
              b.build_date.c_str(), b.compiler.c_str());
  std::printf("  CPU kernels : %s SIMD, %d thread%s%s\n", b.simd.c_str(), b.cpu_threads,
              b.cpu_threads == 1 ? "" : "s", b.openmp ? " (OpenMP)" : "");
  if (b.cuda_built) {
    std::printf("  CUDA backend: built (%s, sm %s, runtime %s)\n", b.cuda_compiler.c_str(),
                b.cuda_archs.c_str(), b.cuda_runtime.c_str());
    if (devices.empty()) std::printf("  CUDA devices: none found (CUDA ops unavailable here)\n");
    for (size_t i = 0; i < devices.size(); ++i)
      std::printf("  CUDA device %zu: %s\n", i, devices[i].c_str());
  } else {
    std::printf("  CUDA backend: not built (CPU only)\n");
  }
  return 0;
}

DOFPOSE_COMMAND(info, "info [--json]",
                "build configuration, SIMD level, threads, CUDA devices", cmd_info);

}  // namespace dofpose_cli
