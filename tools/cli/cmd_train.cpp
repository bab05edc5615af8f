// dofpose train: trains a lifter from a TrainConfig JSON (docs/training.md).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "dofpose/train/trainer.h"
#include "tools/cli/commands.h"

namespace dofpose_cli {

namespace {

const char* kTrainHelp =
    "usage: dofpose train --config CONFIG.json [--resume] [--out DIR] [--max-steps N] [--quiet]\n"
    "\n"
    "Trains a 2D->3D lifter (martinez, progressive or two_block) on dataset files written\n"
    "by tools/h36m_import.py. See docs/training.md for the config reference.\n"
    "\n"
    "  --config FILE   the TrainConfig JSON (required)\n"
    "  --resume        continue from OUT/checkpoint.safetensors (bitwise like an uninterrupted run)\n"
    "  --out DIR       overrides the config's out_dir\n"
    "  --max-steps N   stop (checkpoint saved, as on Ctrl-C) once N optimizer steps are done\n"
    "  --quiet         no progress bar or epoch lines on stderr\n"
    "\n"
    "Writes OUT/log.csv, OUT/config.json, OUT/checkpoint.safetensors (every checkpoint_minutes,\n"
    "each epoch, and on SIGINT/SIGTERM) and finally OUT/model.safetensors. Exit status 0 when\n"
    "training completed, 130 when it was interrupted (checkpoint saved), 2 on errors.\n";

}  // namespace

int cmd_train(int argc, char** argv) {
  std::string config_path, out_dir;
  dofpose::train::TrainOptions options;
  if (wants_help(argc, argv)) {
    std::printf("%s", kTrainHelp);
    return 0;
  }
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      return argv[++i];
    };
    if (a == "--config") config_path = value();
    else if (a == "--out") out_dir = value();
    else if (a == "--resume") options.resume = true;
    else if (a == "--quiet") options.progress = false;
    else if (a == "--max-steps")
      options.stop_after_steps = parse_int_arg(a, value(), 1, std::numeric_limits<int64_t>::max());
    else throw UsageError("unknown option '" + a + "'");
  }
  if (config_path.empty()) throw UsageError("--config is required");
  dofpose::train::TrainConfig config = dofpose::train::TrainConfig::from_file(config_path);
  if (!out_dir.empty()) config.out_dir = out_dir;

  dofpose::train::install_stop_signal_handlers();
  const dofpose::train::TrainResult r = dofpose::train::train_lifter(config, options);
  if (r.already_at_stop) {
    std::printf("checkpoint %s is already at step %lld, at or past --max-steps %lld: nothing to "
                "train, nothing written\n",
                r.checkpoint_path.c_str(), (long long)r.steps, (long long)options.stop_after_steps);
    return 0;
  }

  std::printf("%s: %s lifter, %d/%d epochs, %lld steps, %lld training / %lld validation samples\n",
              r.interrupted ? "interrupted" : "done", config.model.kind.c_str(), r.epochs_completed,
              config.epochs, (long long)r.steps, (long long)r.train_samples,
              (long long)r.val_samples);
  if (!r.epochs.empty()) {
    const auto& e = r.epochs.back();
    if (e.val_mpjpe >= 0)
      std::printf("  last epoch %d: train loss %.5f, val MPJPE %.2f mm, P-MPJPE %.2f mm\n", e.epoch,
                  e.train_loss, e.val_mpjpe, e.val_pmpjpe);
    else
      std::printf("  last epoch %d: train loss %.5f\n", e.epoch, e.train_loss);
  }
  std::printf("  throughput %.0f samples/s, %.1f s of training in total\n", r.samples_per_second,
              r.seconds);
  std::printf("  log %s\n  checkpoint %s\n", r.log_path.c_str(), r.checkpoint_path.c_str());
  if (!r.interrupted) std::printf("  model %s\n", r.model_path.c_str());
  return r.interrupted ? 130 : 0;
}

DOFPOSE_COMMAND(train, "train --config CONFIG.json [--resume]",
                "train a 2D->3D lifter (seeded, resumable)", cmd_train);

}  // namespace dofpose_cli
