// dofpose: the command-line program. Subcommands live in their own files.
#include <cstdio>
#include <cstring>
#include <string>

#include "tools/cli/commands.h"

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "dofpose - 3D human pose estimation engine (CPU and CUDA)\n"
               "\n"
               "usage: dofpose <command> [options]\n"
               "\n"
               "commands:\n"
               "  info [--json]          build configuration, SIMD level, threads, CUDA devices\n"
               "  selfcheck              run every CPU op forward and backward on a small\n"
               "                         bottleneck block and check the gradients numerically\n"
               "  inspect FILE           list the tensors and metadata of a weights file\n"
               "  help                   this text\n"
               "\n"
               "Later commands (forward, train, eval, lift, demo) arrive with the models.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help") ||
      !std::strcmp(argv[1], "-h")) {
    usage(stdout);
    return argc < 2 ? 1 : 0;
  }
  std::string cmd = argv[1];
  try {
    if (cmd == "info") return dofpose_cli::cmd_info(argc - 2, argv + 2);
    if (cmd == "selfcheck") return dofpose_cli::cmd_selfcheck(argc - 2, argv + 2);
    if (cmd == "inspect") return dofpose_cli::cmd_inspect(argc - 2, argv + 2);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dofpose %s: error: %s\n", cmd.c_str(), e.what());
    return 2;
  }
  std::fprintf(stderr, "dofpose: unknown command '%s'\n\n", cmd.c_str());
  usage(stderr);
  return 1;
}
