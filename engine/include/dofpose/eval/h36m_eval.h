// Human3.6M evaluation of a 2D -> 3D lifter (docs/evaluation.md): for every
// subject / action / camera / frame of <data>/<subject>.npz, the pelvis-relative
// camera-frame ground truth, the 2D input (stacked-hourglass detections or the
// projected ground truth), optional torso-plane attributes (ground truth or
// noisy), a prediction, and the protocol-1/2 metrics per action.
//
// The loop is independent of the model: evaluate_h36m takes any PosePredictor,
// so the lifter, an oracle (tests) or another method all run through the same
// data path and accumulation.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dofpose/metrics.h"

namespace dofpose::eval {

// ---- command-line vocabularies (parsed here so that their errors are testable)

enum class InputSource : uint8_t {
  Detections,   // "sh": stacked-hourglass MPII-16 detections mapped to H36M-17
  GroundTruth,  // "gt": ground-truth 3D projected with the camera (with distortion)
};
InputSource parse_input_source(const std::string& s);  // throws listing "sh", "gt"
const char* input_source_name(InputSource s);          // "sh" | "gt"

struct AttributeSource {
  enum class Kind : uint8_t { None, GroundTruth, Noisy };
  Kind kind = Kind::None;
  // Noisy: each label is kept with this probability, otherwise replaced by one
  // of the two other classes (each with probability 1/2).
  double keep_probability = 1.0;
  std::string str() const;  // "none" | "gt" | "noisy:0.84"
};
// "none" | "gt" | "noisy:P" with 0 <= P <= 1; throws naming the bad spec.
AttributeSource parse_attribute_source(const std::string& s);

// Threshold (mm) of the front / back / on-plane labels when the model file
// does not say (metadata "attribute_threshold_mm"): the project's choice,
// docs/attributes.md (DEFAULT_THRESHOLD_MM of tools/h36m_import.py).
constexpr double kDefaultAttributeThresholdMm = 70.0;

// ---- the evaluation loop

struct H36mEvalOptions {
  std::string data_dir;               // holds <subject>.npz and cameras.json
  std::vector<std::string> subjects;  // e.g. {"S9", "S11"}; each file must exist
  InputSource input = InputSource::Detections;
  AttributeSource attributes;         // Kind::None: the predictor gets no labels
  double attribute_threshold_mm = kDefaultAttributeThresholdMm;
  uint64_t seed = 0;                  // the noisy-attribute stream
  std::vector<std::string> cameras;   // camera ids; empty = all cameras of each subject
  std::vector<std::string> actions;   // archive names ("Walking 1") or canonical names
                                      // ("Walking", matching every sequence); empty = all
  int64_t max_frames = 0;             // > 0: only the first max_frames frames of each
                                      // (subject, action) sequence, in every camera
  int64_t batch_size = 1024;
  // Called after each batch with poses done and the total (for a progress bar).
  std::function<void(int64_t done, int64_t total)> progress;
};

// One batch of poses handed to a predictor. Pointers are valid during the call.
struct PoseBatch {
  int64_t n = 0;
  const float* pose2d = nullptr;        // n x 17 x 2 pixels, H36M-17 order
  const int32_t* attributes = nullptr;  // n x 9 labels (0 front, 1 back, 2 on-plane) or null
  const float* gt3d = nullptr;          // n x 17 x 3 ground truth (camera mm, pelvis-relative);
                                        // for oracles and diagnostics — a model must not read it
  std::string subject, action, camera;  // where the batch comes from
};
// Writes n x 17 x 3 pelvis-relative camera-frame millimetres to `pred3d`.
using PosePredictor = std::function<void(const PoseBatch& batch, float* pred3d)>;

// The paper's per-joint table groups (H36M-17 indices). The pelvis is the
// origin of both poses (error 0 by construction) and belongs to no group.
struct JointGroupDef {
  const char* name;
  std::vector<int> joints;
};
// hip, spine, thorax, shoulder, head, elbow, knee, wrist, ankle.
const std::vector<JointGroupDef>& paper_joint_groups();

struct H36mEvalResult {
  std::vector<std::string> subjects, cameras, actions;  // actions: canonical, sorted
  std::string input, attributes;                        // as given ("sh", "noisy:0.84", ...)
  double attribute_threshold_mm = 0;
  int64_t frames = 0;     // poses evaluated: frames x cameras
  int64_t sequences = 0;  // (subject, action, camera) sequences
  std::vector<MetricSummary> per_action;  // sorted by canonical action name
  MetricSummary mean_over_actions;        // protocol: mean of per-action means
  MetricSummary pooled;                   // every pose weighted equally
  // MPJPE per paper group (paper_joint_groups() order), from the per-joint
  // errors averaged over actions (as the per-action numbers) or over all poses.
  std::vector<double> group_mpjpe_mean_over_actions, group_mpjpe_pooled;
  // Noisy attributes: the fraction of input labels equal to the ground truth.
  bool has_input_attributes = false;
  double input_attribute_accuracy = 0;
};

H36mEvalResult evaluate_h36m(const H36mEvalOptions& options, const PosePredictor& predict);

// ---- the lifter as a predictor

struct LifterEvalInfo {
  std::string model_path, kind;
  bool uses_attributes = false;
  int num_joints_in = 0;
  double attribute_threshold_mm = kDefaultAttributeThresholdMm;  // from the file, else default
  bool threshold_from_model = false;
};

struct LifterEvalSettings {
  double threshold_override_mm = -1;  // >= 0: use instead of the file's / the default
  bool attributes_auto = false;       // ignore options.attributes: "gt" when the lifter
                                      // takes attributes, else "none"
};

// Loads the lifter at model_path (an error names the file when it is not a
// lifter), checks that `options.attributes` fits it (a lifter with attributes
// needs "gt" or "noisy:P", one without needs "none"), takes the attribute
// threshold from the file's metadata "attribute_threshold_mm" (else
// kDefaultAttributeThresholdMm) unless overridden, and runs evaluate_h36m with
// batched inference-mode forwards.
H36mEvalResult evaluate_h36m_lifter(const std::string& model_path, H36mEvalOptions options,
                                    const LifterEvalSettings& settings = {},
                                    LifterEvalInfo* info = nullptr);

// ---- reports

std::string eval_result_json(const H36mEvalResult& r, const LifterEvalInfo* info = nullptr);
std::string eval_result_table(const H36mEvalResult& r, const LifterEvalInfo* info = nullptr);

}  // namespace dofpose::eval
