// Subcommands of the dofpose program. Each lives in its own cmd_<name>.cpp and
// registers itself with DOFPOSE_COMMAND, so adding one touches no other file.
#pragma once
#include <string>
#include <vector>

namespace dofpose_cli {

using CommandFn = int (*)(int argc, char** argv);  // argv excludes "dofpose <name>"

struct Command {
  std::string name, usage, summary;
  CommandFn run;
};

std::vector<Command>& commands();
bool register_command(const char* name, const char* usage, const char* summary, CommandFn run);

}  // namespace dofpose_cli

// DOFPOSE_COMMAND(info, "info [--json]", "build configuration ...", cmd_info)
#define DOFPOSE_COMMAND(name, usage, summary, fn)           \
  static const bool dofpose_registered_##name =             \
      ::dofpose_cli::register_command(#name, usage, summary, fn)
