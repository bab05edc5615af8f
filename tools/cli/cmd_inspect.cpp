// dofpose inspect FILE: the tensors and metadata of a weights file.
#include <cstdio>

#include "dofpose/weights.h"
#include "tools/cli/commands.h"

namespace dofpose_cli {

int cmd_inspect(int argc, char** argv) {
  if (argc < 1) {
    std::fprintf(stderr, "usage: dofpose inspect FILE.safetensors\n");
    return 1;
  }
  dofpose::WeightsFile f(argv[0]);
  auto names = f.names();
  std::printf("%s: %zu tensors\n", argv[0], names.size());
  size_t total = 0;
  for (const auto& n : names) {
    const auto& e = f.entry(n);
    std::printf("  %-48s %-5s %-20s bytes %llu..%llu\n", n.c_str(), dofpose::dtype_name(e.dtype),
                e.shape.str().c_str(), (unsigned long long)e.begin, (unsigned long long)e.end);
    total += size_t(e.shape.numel());
  }
  std::printf("  parameters: %zu\n", total);
  for (const auto& kv : f.metadata()) {
    std::string v = kv.second.size() > 200 ? kv.second.substr(0, 200) + "..." : kv.second;
    std::printf("  metadata %s = %s\n", kv.first.c_str(), v.c_str());
  }
  return 0;
}

DOFPOSE_COMMAND(inspect, "inspect FILE",
                "list the tensors and metadata of a weights file", cmd_inspect);

}  // namespace dofpose_cli
