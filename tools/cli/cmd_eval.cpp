// dofpose eval: Human3.6M protocol-1/2 evaluation of a lifter (docs/evaluation.md).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "dofpose/error.h"
#include "dofpose/eval/h36m_eval.h"
#include "tools/cli/commands.h"

namespace dofpose_cli {
namespace {

const char* kEvalHelp =
    "usage: dofpose eval --model M.safetensors --data DIR --subjects S9[,S11...]\n"
    "                    [--input sh|gt] [--attributes none|gt|noisy:P] [--seed N]\n"
    "                    [--cameras all|ID,...] [--actions NAME,...] [--max-frames N]\n"
    "                    [--attribute-threshold MM] [--batch N] [--json] [--quiet]\n\n"
    "Evaluates a 2D->3D lifter on Human3.6M: DIR holds <subject>.npz and cameras.json.\n"
    "  --input sh        stacked-hourglass detections (default); gt: projected ground truth\n"
    "  --attributes      torso-plane labels fed to the lifter: gt (default for a lifter that\n"
    "                    takes them), noisy:P (each label kept with probability P, else one of\n"
    "                    the two other classes; --seed), none (default otherwise)\n"
    "  --max-frames N    only the first N frames of each action (every camera)\n"
    "  --actions         archive names ('Walking 1') or actions ('Walking' = all its sequences)\n"
    "  --json            one JSON object on stdout instead of the tables\n"
    "Progress goes to stderr (--quiet: none). Reports MPJPE (protocol 1) and P-MPJPE\n"
    "(protocol 2) per action, their mean over actions and over all frames, 3DPCK@150 mm,\n"
    "AUC, and per-joint-group MPJPE.\n";

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = s.find(',', start);
    const std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!item.empty()) out.push_back(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

// Silent for the first second (short runs print nothing), then redraws one
// line on a terminal, or prints a line per 10 % elsewhere (logs).
struct Progress {
  bool tty = isatty(2) != 0;
  bool shown = false;
  int last = -1;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  void operator()(int64_t done, int64_t total) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const bool finished = done == total;
    if (!shown && (s < 1.0 || finished)) return;
    const int pct = total ? int(100 * done / total) : 100;
    if (pct == last || (!tty && shown && pct / 10 == last / 10 && !finished)) return;
    shown = true;
    last = pct;
    std::fprintf(stderr, "%seval: %lld/%lld poses (%d%%), %.1f s%s", tty ? "\r" : "",
                 static_cast<long long>(done), static_cast<long long>(total), pct, s,
                 tty && !finished ? "" : "\n");
    std::fflush(stderr);
  }
};

}  // namespace

int cmd_eval(int argc, char** argv) {
  dofpose::eval::H36mEvalOptions opt;
  dofpose::eval::LifterEvalSettings settings;
  settings.attributes_auto = true;
  std::string model;
  bool json = false, quiet = false;
  if (wants_help(argc, argv)) {
    std::printf("%s", kEvalHelp);
    return 0;
  }
  static const char* const with_value[] = {"--model", "--data", "--subjects", "--input",
                                            "--attributes", "--seed", "--cameras", "--actions",
                                            "--max-frames", "--batch", "--attribute-threshold"};
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") { json = true; continue; }
    if (a == "--quiet") { quiet = true; continue; }
    bool known = false;
    for (const char* f : with_value) known = known || a == f;
    if (!known)
      throw UsageError(a.rfind('-', 0) == 0 ? "unknown option '" + a + "'"
                                            : "unexpected argument '" + a + "'");
    if (i + 1 >= argc) throw UsageError(a + " needs a value");
    const std::string v = argv[++i];
    // A bad value is a usage error (status 1), also where the library parses it
    // (its messages already start with the flag: "--input: unknown value ...").
    auto parsed = [&](auto parse) { return parse_value_arg(a, [&] { return parse(v); }); };
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    if (a == "--model") model = v;
    else if (a == "--data") opt.data_dir = v;
    else if (a == "--subjects") opt.subjects = split_commas(v);
    else if (a == "--input") opt.input = parsed(dofpose::eval::parse_input_source);
    else if (a == "--attributes") {
      opt.attributes = parsed(dofpose::eval::parse_attribute_source);
      settings.attributes_auto = false;
    } else if (a == "--seed") opt.seed = uint64_t(parse_int_arg(a, v, 0, kMax));
    else if (a == "--cameras") opt.cameras = v == "all" ? std::vector<std::string>{} : split_commas(v);
    else if (a == "--actions") opt.actions = split_commas(v);
    else if (a == "--max-frames") opt.max_frames = parse_int_arg(a, v, 1, kMax);
    else if (a == "--batch") opt.batch_size = parse_int_arg(a, v, 1, 1 << 20);
    else  // --attribute-threshold
      settings.threshold_override_mm =
          parse_number_arg(a, v, 0.0, std::numeric_limits<double>::max(), "a number of mm >= 0");
  }
  if (model.empty()) throw UsageError("--model is required");
  if (opt.data_dir.empty()) throw UsageError("--data is required");
  if (opt.subjects.empty()) throw UsageError("--subjects is required, e.g. --subjects S9,S11");
  Progress progress;
  if (!quiet) opt.progress = [&progress](int64_t d, int64_t t) { progress(d, t); };

  dofpose::eval::LifterEvalInfo info;
  const dofpose::eval::H36mEvalResult r =
      dofpose::eval::evaluate_h36m_lifter(model, opt, settings, &info);
  if (json)
    std::printf("%s\n", dofpose::eval::eval_result_json(r, &info).c_str());
  else
    std::printf("%s", dofpose::eval::eval_result_table(r, &info).c_str());
  return 0;
}

DOFPOSE_COMMAND(eval, "eval --model M --data DIR --subjects S9",
                "Human3.6M MPJPE / P-MPJPE of a lifter, per action and joint group", cmd_eval);

}  // namespace dofpose_cli
