// dofpose: the command-line program. Subcommands register themselves (commands.h).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "tools/cli/commands.h"

namespace dofpose_cli {

std::vector<Command>& commands() {
  static std::vector<Command> all;
  return all;
}

bool register_command(const char* name, const char* usage, const char* summary, CommandFn run) {
  commands().push_back({name, usage, summary, run});
  return true;
}

}  // namespace dofpose_cli

namespace {

void usage(FILE* out) {
  auto cmds = dofpose_cli::commands();
  std::sort(cmds.begin(), cmds.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::fprintf(out,
               "dofpose - 3D human pose estimation engine (CPU and CUDA)\n\n"
               "usage: dofpose <command> [options]    (dofpose <command> --help for details)\n\n"
               "commands:\n");
  for (const auto& c : cmds) {
    // Long usage lines get the summary on the next line, so the column stays aligned.
    if (c.usage.size() > 34)
      std::fprintf(out, "  %s\n  %-34s %s\n", c.usage.c_str(), "", c.summary.c_str());
    else
      std::fprintf(out, "  %-34s %s\n", c.usage.c_str(), c.summary.c_str());
  }
  std::fprintf(out, "  %-34s %s\n", "help", "this text");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help") ||
      !std::strcmp(argv[1], "-h")) {
    usage(stdout);
    return argc < 2 ? 1 : 0;
  }
  std::string cmd = argv[1];
  for (const auto& c : dofpose_cli::commands()) {
    if (c.name != cmd) continue;
    try {
      return c.run(argc - 2, argv + 2);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "dofpose %s: error: %s\n", cmd.c_str(), e.what());
      return 2;
    }
  }
  std::fprintf(stderr, "dofpose: unknown command '%s'\n\n", cmd.c_str());
  usage(stderr);
  return 1;
}
