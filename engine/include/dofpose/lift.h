// Lifting 2D keypoints (any supported layout) to 3D H36M-17 poses with a
// lifter model: missing joints imputed, the layout mapped to H36M-17, the 2D
// brought into the pixel frame the model was trained in, the model run, and
// the `dofpose lift` JSON in and out. The default model is embedded in the
// library (default_lifter_bytes). See docs/lift.md.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dofpose/nn/lifter.h"
#include "dofpose/skeleton.h"

namespace dofpose {

namespace nn {
class Model;
}

// A read-only byte range (C++17 has no std::span).
struct ByteSpan {
  const uint8_t* data = nullptr;
  size_t size = 0;
  bool empty() const { return size == 0; }
};

// The weights file engine/default_model/default_lifter.safetensors as it was
// when the library was built (64-byte aligned); empty when the build had none.
ByteSpan default_lifter_bytes();
// The path that file was embedded from ("" when none).
const char* default_lifter_source_path();

// The 2D pixel frame the model was trained in. Defaults: Human3.6M (1000x1000
// images), measured on the training subjects' (S1, S5-S8) stacked-hourglass
// detections and cameras. A model file may override them with the metadata
// key "lift_frame" (docs/lift.md).
struct TrainingFrame {
  double fx = 1147.3, fy = 1146.2;  // mean focal length of the 4 H36M cameras, px
  double cx = 514.0, cy = 506.7;    // mean principal point, px
  double pelvis_x = 534.2, pelvis_y = 424.5;  // mean pelvis position, px
  double torso_scale = 48.8;  // median torso scale (torso_scale_2d), px
};

struct Intrinsics {
  double fx = 0, fy = 0, cx = 0, cy = 0;
};

// How the 2D reaches the training frame (docs/lift.md, "Coordinates").
//  camera: pixels -> normalised camera coordinates ((u-c)/f) -> re-projected
//          with the training intrinsics; needs the input's camera;
//  scale:  the pose is moved so its pelvis sits at the training mean pelvis
//          and scaled so its torso scale is the training median (after the
//          camera step when a camera is given);
//  none:   the 2D is already in the training frame;
//  auto:   camera when the input has a camera, otherwise scale.
enum class LiftNormalise : uint8_t { Auto, Camera, Scale, None };
const char* lift_normalise_name(LiftNormalise n);
LiftNormalise lift_normalise_from_name(const std::string& name);  // throws listing the names

struct LiftInput {
  LayoutId layout = LayoutId::H36M17;
  int64_t frames = 0;
  std::vector<float> keypoints;   // frames x J x 2, pixels (J = the layout's joints)
  std::vector<float> confidence;  // frames x J, or empty (every joint present)
  std::optional<Intrinsics> camera;
  int image_width = 0, image_height = 0;  // 0 = not given (recorded only)
  std::vector<float> attributes;  // frames x 27 (one-hot / probabilities) for lifters that use them
};

struct LiftOptions {
  LiftNormalise normalise = LiftNormalise::Auto;
  float min_confidence = 0.f;  // a joint with confidence <= this is missing
};

struct LiftedFrame {
  std::array<float, 51> joints{};  // H36M-17 x (x, y, z): mm, camera axes, pelvis at 0
  std::vector<int> imputed;        // joints of the input layout that were missing
  std::vector<int> imputed_h36m;   // H36M-17 joints computed from an imputed joint
};

struct LiftResult {
  LayoutId input_layout = LayoutId::H36M17;
  LiftNormalise normalise_used = LiftNormalise::None;
  std::vector<LiftedFrame> frames;
};

// A lifter model ready to lift (CPU, inference mode).
class PoseLifter {
 public:
  static PoseLifter from_file(const std::string& path);
  // The embedded default model; throws when the build has none.
  static PoseLifter from_default();
  // Weights already in memory (must outlive nothing: they are copied on load).
  static PoseLifter from_memory(const void* bytes, size_t size, const std::string& name);

  PoseLifter(PoseLifter&&) noexcept;
  PoseLifter& operator=(PoseLifter&&) noexcept;
  ~PoseLifter();

  LiftResult lift(const LiftInput& in, const LiftOptions& opt = {});

  const std::string& source() const { return source_; }  // path, or "embedded:<file name>"
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::string status() const;  // metadata "status" ("" when absent)
  std::string summary() const;
  const nn::LifterConfig& config() const { return config_; }
  const TrainingFrame& training_frame() const { return frame_; }

 private:
  PoseLifter() = default;
  static PoseLifter from_weights(const WeightsFile& file, const std::string& source);
  std::string source_;
  std::map<std::string, std::string> metadata_;
  nn::LifterConfig config_;
  TrainingFrame frame_;
  std::unique_ptr<nn::Model> model_;
};

// ---- the steps of PoseLifter::lift, for tests and tools

// Fills the missing joints of one pose (J x 2 values, `present` per joint) in
// place and returns the indices it filled, in the order filled. A missing
// joint takes the mirror image of its left/right counterpart's bone (when the
// counterpart and both parents are known), else its parent's position; a
// missing root (or a joint whose parents are all missing) the mean of the
// known joints. Throws when no joint is known.
std::vector<int> impute_missing_joints(const Layout& layout, float* xy, const std::vector<bool>& present);

// Root-mean-square distance of the H36M-17 torso joints (pelvis, hips, spine,
// thorax, shoulders) from their centroid: a size measure that arms and legs
// do not change. pose: 17 x 2.
double torso_scale_2d(const float* pose);

// Moves n H36M-17 2D poses (n x 17 x 2, in place) into the training frame;
// returns the mode used (auto resolved).
LiftNormalise to_training_frame(float* poses, int64_t n, const std::optional<Intrinsics>& camera,
                                LiftNormalise mode, const TrainingFrame& frame);

// ---- JSON (docs/lift.md, "Input" and "Output")

// Parses the `dofpose lift` input. `source_name` names it in errors;
// `layout_override` ("" = none) is used when the file has no layout, and
// must agree with it when it has one.
LiftInput parse_lift_input(const std::string& text, const std::string& source_name,
                           const std::string& layout_override = "");
LiftInput read_lift_input(const std::string& path, const std::string& layout_override = "");
std::string lift_output_json(const LiftInput& in, const LiftResult& result, const PoseLifter& lifter);
// Writes via a temporary file in the same directory, then rename.
void write_file_atomically(const std::string& path, const std::string& text);

// ---- `dofpose lift` as a library function

struct LiftRunOptions {
  std::string input, output;
  std::string model;   // "" = the embedded default model
  std::string layout;  // "" = the input file's
  LiftNormalise normalise = LiftNormalise::Auto;
  float min_confidence = 0.f;
};

struct LiftRunReport {
  int64_t frames = 0;
  std::string input_layout, model_source, model_status, normalise_used;
  int64_t frames_with_imputed_joints = 0;
  // The input's frames have "attributes" but the lifter takes none (config
  // use_attributes false): they were not used (`dofpose lift` says so on stderr).
  bool attributes_ignored = false;
};

LiftRunReport run_lift(const LiftRunOptions& opt);
// The same with an already loaded model (the demo lifts several files with one).
LiftRunReport run_lift(const LiftRunOptions& opt, PoseLifter& lifter);

}  // namespace dofpose
