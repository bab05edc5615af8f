// Subcommands of the dofpose program. Each lives in its own cmd_<name>.cpp and
// registers itself with DOFPOSE_COMMAND, so adding one touches no other file.
#pragma once
#include <cstdint>
#include <stdexcept>
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

// A bad command line (unknown option, missing or malformed value): main()
// prints "dofpose <name>: <message> (see dofpose <name> --help)", exit status 1
// (docs/cli.md). Errors in the work itself throw dofpose::Error: status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The whole of `text` as a decimal integer in [lo, hi]; else UsageError naming
// the flag, the range and the text ("5abc", "-1" and "99999999999" are refused).
int64_t parse_int_arg(const std::string& flag, const std::string& text, int64_t lo, int64_t hi);

// The whole of `text` as a finite decimal number (strtod) in [lo, hi]; else
// UsageError naming the flag, what was expected and the text.
double parse_number_arg(const std::string& flag, const std::string& text, double lo, double hi,
                        const std::string& expected = "a number");

// An option's value parsed by a library function (an unknown name: "--device tpu",
// "--layout coco18"): the dofpose::Error it throws becomes a UsageError (status 1,
// docs/cli.md), its message prefixed with the flag unless it already starts with it.
template <class Parse>
auto parse_value_arg(const std::string& flag, Parse&& parse) -> decltype(parse()) {
  try {
    return parse();
  } catch (const std::runtime_error& e) {
    if (dynamic_cast<const UsageError*>(&e)) throw;
    const std::string msg = e.what();
    throw UsageError(msg.rfind(flag, 0) == 0 ? msg : flag + ": " + msg);
  }
}

// True when argv holds --help or -h (commands print their usage and exit 0).
bool wants_help(int argc, char** argv);

}  // namespace dofpose_cli

// DOFPOSE_COMMAND(info, "info [--json]", "build configuration ...", cmd_info)
#define DOFPOSE_COMMAND(name, usage, summary, fn)           \
  static const bool dofpose_registered_##name =             \
      ::dofpose_cli::register_command(#name, usage, summary, fn)
