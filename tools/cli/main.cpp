// dofpose: the command-line program. Subcommands register themselves (commands.h).
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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

int64_t parse_int_arg(const std::string& flag, const std::string& text, int64_t lo, int64_t hi) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  // strtoll skips leading blanks and overflows to LLONG_MAX with ERANGE: refuse both.
  const bool ok = !text.empty() && !std::isspace(static_cast<unsigned char>(text[0])) &&
                  *end == '\0' && errno == 0 && v >= lo && v <= hi;
  if (!ok)
    throw UsageError(flag + " needs an integer from " + std::to_string(lo) + " to " +
                     std::to_string(hi) + ", got '" + text + "'");
  return v;
}

double parse_number_arg(const std::string& flag, const std::string& text, double lo, double hi,
                        const std::string& expected) {
  char* end = nullptr;
  const double v = text.empty() ? 0.0 : std::strtod(text.c_str(), &end);
  const bool ok = !text.empty() && !std::isspace(static_cast<unsigned char>(text[0])) &&
                  *end == '\0' && std::isfinite(v) && v >= lo && v <= hi;
  if (!ok) throw UsageError(flag + " needs " + expected + ", got '" + text + "'");
  return v;
}

bool wants_help(int argc, char** argv) {
  for (int i = 0; i < argc; ++i)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) return true;
  return false;
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
    } catch (const dofpose_cli::UsageError& e) {
      std::fprintf(stderr, "dofpose %s: %s (see dofpose %s --help)\n", cmd.c_str(), e.what(),
                   cmd.c_str());
      return 1;
    } catch (const std::exception& e) {
      // Library messages may start with the command's name: do not print it twice.
      std::string msg = e.what();
      if (msg.rfind(cmd + ": ", 0) == 0) msg = msg.substr(cmd.size() + 2);
      std::fprintf(stderr, "dofpose %s: error: %s\n", cmd.c_str(), msg.c_str());
      return 2;
    }
  }
  std::fprintf(stderr, "dofpose: unknown command '%s'\n\n", cmd.c_str());
  usage(stderr);
  return 1;
}
