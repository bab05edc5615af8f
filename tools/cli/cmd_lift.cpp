// dofpose lift: 2D keypoints (JSON, any supported layout) -> 3D H36M-17 poses
// (JSON). The work is dofpose::run_lift (dofpose/lift.h); this file only
// parses the options.
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

#include "dofpose/error.h"
#include "dofpose/lift.h"
#include "dofpose/skeleton.h"
#include "tools/cli/commands.h"

namespace dofpose_cli {
namespace {

constexpr const char* kUsage =
    "usage: dofpose lift IN.json -o OUT.json [--model M.safetensors]\n"
    "                    [--layout coco17|mpii16|h36m17|pem14] [--normalise auto|camera|scale|none]\n"
    "                    [--min-confidence C]\n"
    "\n"
    "Lifts 2D keypoints to 3D H36M-17 joints (mm, camera axes, relative to the pelvis).\n"
    "\n"
    "  IN.json           {\"layout\": \"coco17\", \"image_size\": [w, h] or \"camera\": {\"f\": [fx, fy],\n"
    "                    \"c\": [cx, cy]}, \"frames\": [{\"keypoints\": [[x, y, conf], ...]}, ...]}\n"
    "                    or a bare list of frames (then --layout is needed)\n"
    "  -o, --output FILE the 3D poses as JSON (written atomically)\n"
    "  --model FILE      a lifter weights file (default: the model built into dofpose)\n"
    "  --layout NAME     the input's joint layout when the file does not say\n"
    "  --normalise MODE  how the 2D reaches the model's training frame (default auto:\n"
    "                    camera when the input has a camera, else scale)\n"
    "  --min-confidence C  joints with confidence <= C are missing and imputed (default 0)\n"
    "\n"
    "Details: docs/lift.md\n";

}  // namespace

int cmd_lift(int argc, char** argv) {
  dofpose::LiftRunOptions opt;
  if (wants_help(argc, argv)) {
    std::printf("%s", kUsage);
    return 0;
  }
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    const bool takes_value = a == "-o" || a == "--output" || a == "--model" || a == "--layout" ||
                             a == "--normalise" || a == "--normalize" || a == "--min-confidence";
    if (takes_value) {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      const std::string v = argv[++i];
      if (a == "-o" || a == "--output") opt.output = v;
      else if (a == "--model") opt.model = v;
      else if (a == "--layout") {
        parse_value_arg(a, [&] { return &dofpose::layout_from_name(v); });
        opt.layout = v;
      } else if (a == "--normalise" || a == "--normalize") {
        opt.normalise = parse_value_arg(a, [&] { return dofpose::lift_normalise_from_name(v); });
      } else {
        opt.min_confidence = float(parse_number_arg(a, v, -std::numeric_limits<float>::max(),
                                                    std::numeric_limits<float>::max()));
      }
      continue;
    }
    if (a.size() > 1 && a[0] == '-') throw UsageError("unknown option '" + a + "'");
    if (!opt.input.empty())
      throw UsageError("more than one input file ('" + opt.input + "', '" + a + "')");
    opt.input = a;
  }
  if (opt.input.empty()) throw UsageError("IN.json is required");
  if (opt.output.empty()) throw UsageError("-o OUT.json is required");
  const dofpose::LiftRunReport r = dofpose::run_lift(opt);
  if (r.attributes_ignored)
    std::fprintf(stderr, "dofpose lift: note: %s: the frames' \"attributes\" were ignored (model %s "
                 "takes no torso-plane attributes)\n", opt.input.c_str(), r.model_source.c_str());
  std::printf("lifted %lld frame(s) of %s -> %s\n", static_cast<long long>(r.frames), r.input_layout.c_str(),
              opt.output.c_str());
  std::printf("model: %s%s%s\n", r.model_source.c_str(), r.model_status.empty() ? "" : ", status: ",
              r.model_status.c_str());
  std::printf("normalisation: %s", r.normalise_used.c_str());
  if (r.frames_with_imputed_joints > 0)
    std::printf("; %lld frame(s) had missing joints, imputed (see \"imputed\" in the output)",
                static_cast<long long>(r.frames_with_imputed_joints));
  std::printf("\n");
  return 0;
}

DOFPOSE_COMMAND(lift, "lift IN.json -o OUT.json [--model M] [--layout L]",
                "lift 2D keypoints (JSON) to 3D H36M-17 poses with the default or a given lifter",
                cmd_lift);

}  // namespace dofpose_cli
