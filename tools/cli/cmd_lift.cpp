// dofpose lift: 2D keypoints (JSON, any supported layout) -> 3D H36M-17 poses
// (JSON). The work is dofpose::run_lift (dofpose/lift.h); this file only
// parses the options.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dofpose/error.h"
#include "dofpose/lift.h"
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
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    }
    const bool takes_value = a == "-o" || a == "--output" || a == "--model" || a == "--layout" ||
                             a == "--normalise" || a == "--normalize" || a == "--min-confidence";
    if (takes_value) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "dofpose lift: %s needs a value\n", a.c_str());
        return 1;
      }
      const std::string v = argv[++i];
      if (a == "-o" || a == "--output") opt.output = v;
      else if (a == "--model") opt.model = v;
      else if (a == "--layout") opt.layout = v;
      else if (a == "--normalise" || a == "--normalize") opt.normalise = dofpose::lift_normalise_from_name(v);
      else {
        char* end = nullptr;
        opt.min_confidence = std::strtof(v.c_str(), &end);
        if (end == v.c_str() || *end != '\0') {
          std::fprintf(stderr, "dofpose lift: --min-confidence needs a number, got '%s'\n", v.c_str());
          return 1;
        }
      }
      continue;
    }
    if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "dofpose lift: unknown option '%s'\n\n%s", a.c_str(), kUsage);
      return 1;
    }
    if (!opt.input.empty()) {
      std::fprintf(stderr, "dofpose lift: more than one input file ('%s', '%s')\n", opt.input.c_str(), a.c_str());
      return 1;
    }
    opt.input = a;
  }
  if (opt.input.empty() || opt.output.empty()) {
    std::fprintf(stderr, "dofpose lift: needs IN.json and -o OUT.json\n\n%s", kUsage);
    return 1;
  }
  const dofpose::LiftRunReport r = dofpose::run_lift(opt);
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
