// Lifter training: the TrainConfig (JSON), and train_lifter, which runs a
// seeded, reproducible, resumable training (docs/training.md).
//
// Reproducibility: every random choice is a pure function of (seed, counters):
// parameter init, dropout masks (seed + per-layer step counters), the
// per-epoch permutation (seed, epoch), flips and virtual cameras (seed,
// epoch, sample) and noisy
// attributes (seed, row). The CPU kernels are deterministic whatever the
// thread count, so the same config on the same machine gives bitwise the same
// weights, and a run interrupted and resumed from its checkpoint ends
// bitwise identical to an uninterrupted one.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dofpose/nn/lifter.h"

namespace dofpose::train {

// Extra virtual cameras (docs/training.md): with `probability` per training
// sample and epoch, the 3D pose is turned about the vertical through the
// pelvis by a uniform angle in [-max_yaw_deg, max_yaw_deg] and re-projected
// with the sample's camera to make its 2D input. Needs input "gt".
struct VirtualCameraConfig {
  double probability = 0.0;  // 0 = off
  double max_yaw_deg = 180.0;
  bool used() const { return probability > 0.0; }
};

struct DataConfig {
  std::string train, val;          // dataset files; val "" = no validation
  std::string input = "sh";        // "sh" | "gt"
  std::string attributes = "none"; // "none" | "gt" | "noisy:P"
  bool flip = false;               // random left/right mirroring of training samples
  float flip_center_x = 500.f;     // mirror axis in pixels (H36M images are 1000 wide)
  int64_t max_train_samples = 0;   // 0 = all
  int64_t max_val_samples = 0;     // 0 = all
  int64_t subsample = 1;           // use every k-th row (both splits)
  VirtualCameraConfig virtual_cameras;  // training split only
};

struct ScheduleConfig {
  std::string type = "exponential";  // "none" | "step" | "exponential"
  float gamma = 0.1f;                // step: lr0 * gamma^floor(step / step_size)
  int64_t step_size = 100000;
  float rate = 0.96f;                // exponential: lr0 * rate^(step / decay_steps)
  int64_t decay_steps = 100000;
  bool staircase = false;
};

struct OptimizerConfig {
  std::string type = "adam";  // "adam" | "rmsprop"
  float lr = 1e-3f;
  float weight_decay = 0.f;
  float clip_norm = 0.f;      // clip the global gradient norm; 0 = off
  float beta1 = 0.9f, beta2 = 0.999f;     // adam
  float alpha = 0.99f, momentum = 0.f;    // rmsprop
  float eps = 1e-8f;
  ScheduleConfig schedule;
};

struct TrainConfig {
  nn::LifterConfig model;
  DataConfig data;
  OptimizerConfig optimizer;
  int epochs = 200;
  int batch_size = 64;
  int val_batch_size = 1024;
  uint64_t seed = 0;
  double checkpoint_minutes = 10.0;  // 0 = only at the end of each epoch
  std::string out_dir = "runs/lifter";

  // Unknown keys, wrong types and bad values throw naming the field ("optimizer.schedule.gamma").
  static TrainConfig from_json_string(const std::string& json);
  static TrainConfig from_file(const std::string& path);
  std::string to_json_string() const;  // every field, defaults filled in
  void validate() const;
  float learning_rate(int64_t step) const;
};

struct EpochReport {
  int epoch = 0;            // 1-based
  int64_t step = 0;         // optimizer steps so far
  double train_loss = 0;    // mean over the epoch's batches (normalised L1, summed over blocks)
  double val_mpjpe = -1;    // mm, protocol 1, mean over actions (-1: no val set)
  double val_pmpjpe = -1;   // mm, protocol 2
  float lr = 0;
  double seconds = 0;       // training wall time so far (across resumes)
};

struct TrainOptions {
  bool resume = false;      // continue from out_dir/checkpoint.safetensors
  bool progress = true;     // \r-updated progress bar and epoch lines on stderr
  // Behave as if interrupted once the global step count reaches this (finish
  // the batch, save the checkpoint, return); a resumed checkpoint already
  // there returns at once (TrainResult::already_at_stop). 0 = off.
  int64_t stop_after_steps = 0;
  std::function<void(const EpochReport&)> on_epoch;  // called after each epoch's validation
};

struct TrainResult {
  bool interrupted = false;  // stopped by a signal or the test hook; checkpoint saved
  // Resumed from a checkpoint already at or past stop_after_steps: nothing was
  // trained and nothing written (the checkpoint is left as it was).
  bool already_at_stop = false;
  int epochs_completed = 0;
  int64_t steps = 0;
  int64_t train_samples = 0, val_samples = 0;
  double samples_per_second = 0;  // training samples / training time (this process)
  double seconds = 0;             // training wall time (across resumes)
  std::vector<EpochReport> epochs;  // the epochs this process ran
  std::string model_path, checkpoint_path, log_path;
};

TrainResult train_lifter(const TrainConfig& config, const TrainOptions& options = {});

// SIGINT/SIGTERM set a flag that train_lifter checks after each batch (it then
// saves a checkpoint and returns interrupted); a second signal kills as usual.
void install_stop_signal_handlers();
bool stop_requested();
void clear_stop_request();

// Checkpoint and model file names inside out_dir.
constexpr const char* kCheckpointFile = "checkpoint.safetensors";
constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kLogFile = "log.csv";

}  // namespace dofpose::train
