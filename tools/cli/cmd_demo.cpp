// dofpose demo: synthetic poses -> 2D through an H36M-like camera -> `dofpose
// lift` with the built-in model -> errors against the known 3D answer. The
// work is dofpose::run_demo (dofpose/demo.h).
#include <cstdio>
#include <limits>
#include <string>

#include "dofpose/demo.h"
#include "dofpose/error.h"
#include "tools/cli/commands.h"

namespace dofpose_cli {
namespace {

constexpr const char* kUsage =
    "usage: dofpose demo [--out DIR] [--model M.safetensors] [--no-png] [--seed N]\n"
    "\n"
    "Builds synthetic 3D poses (standing, walking, arms raised, sitting; 3 views each),\n"
    "projects them with an H36M-like camera, writes the 2D as `dofpose lift` inputs in\n"
    "the h36m17 and coco17 layouts, lifts them with the built-in model (or --model) and\n"
    "prints MPJPE and P-MPJPE against the known answer.\n"
    "\n"
    "  --out DIR   output directory (default ./dofpose-demo)\n"
    "  --model M   a lifter weights file instead of the built-in one\n"
    "  --no-png    skip the pictures (input 2D | front view | side view; grey = truth)\n"
    "  --seed N    the poses' random variation (default 0)\n"
    "\n"
    "Details: docs/lift.md\n";

}  // namespace

int cmd_demo(int argc, char** argv) {
  dofpose::DemoOptions opt;
  if (wants_help(argc, argv)) {
    std::printf("%s", kUsage);
    return 0;
  }
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--no-png") {
      opt.write_png = false;
      continue;
    }
    if (a != "--out" && a != "--model" && a != "--seed")
      throw UsageError(a.rfind('-', 0) == 0 ? "unknown option '" + a + "'"
                                            : "unexpected argument '" + a + "'");
    if (i + 1 >= argc) throw UsageError(a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--out") opt.out_dir = v;
    else if (a == "--model") opt.model = v;
    else opt.seed = unsigned(parse_int_arg(a, v, 0, std::numeric_limits<unsigned>::max()));
  }
  const dofpose::DemoResult r = dofpose::run_demo(opt);
  std::printf("model: %s%s%s\n", r.model_source.c_str(), r.model_status.empty() ? "" : ", status: ",
              r.model_status.c_str());
  if (r.model_status.find("untrained") != std::string::npos)
    std::printf("note: this model is an untrained stand-in; the errors below are meaningless\n");
  std::printf("\n%s\n", dofpose::format_demo_table(r).c_str());
  std::printf("wrote %zu files to %s:\n", r.files.size(), opt.out_dir.c_str());
  for (const std::string& f : r.files) std::printf("  %s\n", f.c_str());
  return 0;
}

DOFPOSE_COMMAND(demo, "demo [--out DIR] [--model M]",
                "lift synthetic poses with the built-in model and compare with the known 3D",
                cmd_demo);

}  // namespace dofpose_cli
