// dofpose inspect FILE: the tensors and metadata of a weights file.
#include <cstdio>
#include <string>

#include "dofpose/weights.h"
#include "tools/cli/commands.h"

namespace dofpose_cli {

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// A tensor training does not update (nn::Buffer, and what the loaders ignore):
// BatchNorm running statistics, the lifters' normalisation statistics and a
// checkpoint's optimizer state (docs/weights-format.md).
bool is_buffer(const std::string& name) {
  return ends_with(name, ".running_mean") || ends_with(name, ".running_var") ||
         ends_with(name, ".num_batches_tracked") || name.rfind("optim.", 0) == 0 ||
         ((name.rfind("norm.", 0) == 0 || name.find(".norm.") != std::string::npos) &&
          (ends_with(name, ".mean") || ends_with(name, ".std")));
}

}  // namespace

int cmd_inspect(int argc, char** argv) {
  if (wants_help(argc, argv)) {
    std::printf("usage: dofpose inspect FILE.safetensors\n\nLists every tensor (name, dtype, shape, "
                "byte range), the number of values (parameters, which training\nupdates, and buffers: "
                "BatchNorm running statistics, norm.*, optim.*) and the\nmetadata of a weights file "
                "(docs/weights-format.md).\n");
    return 0;
  }
  if (argc != 1) throw UsageError(argc == 0 ? "needs a weights file" : "takes one weights file");
  if (argv[0][0] == '-') throw UsageError(std::string("unknown option '") + argv[0] + "'");
  const std::string path = argv[0];
  dofpose::WeightsFile f(path);
  auto names = f.names();
  std::printf("%s: %zu tensors\n", path.c_str(), names.size());
  size_t params = 0, buffers = 0;
  for (const auto& n : names) {
    const auto& e = f.entry(n);
    std::printf("  %-48s %-5s %-20s bytes %llu..%llu\n", n.c_str(), dofpose::dtype_name(e.dtype),
                e.shape.str().c_str(), (unsigned long long)e.begin, (unsigned long long)e.end);
    (is_buffer(n) ? buffers : params) += size_t(e.shape.numel());
  }
  // Parameters = what training updates (docs/models.md's counts); buffers = the rest.
  std::printf("  values: %zu (parameters: %zu, buffers: %zu)\n", params + buffers, params, buffers);
  for (const auto& kv : f.metadata()) {
    std::string v = kv.second.size() > 200 ? kv.second.substr(0, 200) + "..." : kv.second;
    std::printf("  metadata %s = %s\n", kv.first.c_str(), v.c_str());
  }
  return 0;
}

DOFPOSE_COMMAND(inspect, "inspect FILE",
                "list the tensors and metadata of a weights file", cmd_inspect);

}  // namespace dofpose_cli
