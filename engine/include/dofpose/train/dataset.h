// A lifter training/validation set: one safetensors file per split, as written
// by tools/h36m_import.py (docs/training.md, "Dataset files"), memory-mapped and
// turned into lifter samples on demand (nothing is copied up front, so the
// full Human3.6M training set costs no memory beyond the mapping).
//
// One sample: the 2D input (pixels, the lifter's input joints in H36M-17
// order), optionally the 9 torso-plane attributes one-hot ([27]), and the
// target: pelvis-relative camera-frame 3D in mm, all 17 joints ([51]).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "dofpose/camera.h"
#include "dofpose/tensor.h"
#include "dofpose/weights.h"

namespace dofpose::train {

// Where the attribute inputs come from.
struct AttributeSource {
  enum class Kind { None, GroundTruth, Noisy } kind = Kind::None;
  // Noisy: each label is kept with this probability, otherwise replaced by
  // one of the two other classes (each equally likely).
  double accuracy = 1.0;
  // "none" | "gt" | "noisy:P" with P in [0, 1]; throws naming `field`.
  static AttributeSource parse(const std::string& text, const std::string& field);
  std::string str() const;
  bool used() const { return kind != Kind::None; }
};

struct DatasetOptions {
  std::string input = "sh";  // "sh": stacked-hourglass detections (MPII-16); "gt": projected ground truth
  AttributeSource attributes;
  int num_joints_in = 16;    // 16 (H36M-17 minus neck/nose) or 17 (LifterConfig::num_joints_in)
  int64_t subsample = 1;     // keep every k-th row of the file
  int64_t max_samples = 0;   // after subsampling, keep at most this many, evenly spaced (0 = all)
  uint64_t noise_seed = 0;   // seeds the noisy attribute labels
  float flip_center_x = 500.f;  // mirror axis of the 2D flip, pixels
  // Load each row's camera intrinsics (tensors `subject`, `camera`, metadata
  // `subjects` and `cameras`) so get_virtual() can re-project rotated poses.
  // Needs input "gt".
  bool virtual_cameras = false;
};

class LifterDataset {
 public:
  // Opens and validates the file: every tensor the options need must exist
  // (pose3d_cam, action, pose2d_sh or pose2d_gt, attributes when used) and
  // every known tensor present must have its dtype and a consistent shape;
  // the metadata must hold the `actions` list. Errors name the file and tensor.
  LifterDataset(const std::string& path, const DatasetOptions& options);

  const std::string& path() const { return file_.path(); }
  const DatasetOptions& options() const { return options_; }
  int64_t size() const { return int64_t(rows_.size()); }  // selected samples
  int64_t file_rows() const { return rows_in_file_; }
  int pose_input_dim() const { return 2 * options_.num_joints_in; }
  bool uses_attributes() const { return options_.attributes.used(); }

  // Sample i (0 <= i < size()): pose2d [2*num_joints_in] pixels; attributes
  // [27] one-hot (only written when attributes are used; may be null
  // otherwise); pose3d [51] pelvis-relative mm. flip mirrors left/right.
  void get(int64_t i, bool flip, float* pose2d, float* attributes, float* pose3d) const;
  // The same sample seen by a virtual camera: the camera-frame 3D pose turned
  // by yaw_rad about the axis parallel to the camera's y axis through the
  // pelvis (pelvis position and depth kept), projected with the row's camera
  // intrinsics (with distortion) to give the 2D input; pose3d is the turned
  // pelvis-relative pose. Flip is applied after. Attributes are unchanged (a
  // rigid turn of the whole body does not move joints across the torso
  // plane). Falls back to the unturned sample if a turned joint would come
  // within 100 mm of the camera plane. Needs options().virtual_cameras.
  void get_virtual(int64_t i, bool flip, double yaw_rad, float* pose2d, float* attributes,
                   float* pose3d) const;
  // The intrinsics used for sample i (needs options().virtual_cameras).
  const Camera& camera_of(int64_t i) const;
  // The 9 attribute labels of sample i as the lifter sees them (noise applied, no flip).
  void attribute_labels(int64_t i, int32_t* labels9) const;
  int32_t action(int64_t i) const;
  const std::string& action_name(int64_t i) const;
  const std::vector<std::string>& action_names() const { return actions_; }

 private:
  WeightsFile file_;
  DatasetOptions options_;
  int64_t rows_in_file_ = 0;
  std::vector<int64_t> rows_;  // file row of each selected sample
  std::vector<std::string> actions_;
  std::vector<int> input_joints_;
  // Views into the mapping, or into owned copies when a tensor is not aligned.
  TensorView pose3d_, pose2d_, attributes_, action_, subject_, camera_;
  std::vector<Camera> cameras_;  // [subject * camera_ids + camera], intrinsics only
  int64_t camera_ids_ = 0;
  void load_cameras();
  // Shared tail of get()/get_virtual(): flip, input joint selection, attributes.
  void finish_sample(int64_t i, bool flip, float* p2, float* p3, float* pose2d,
                     float* attributes, float* pose3d) const;
  std::vector<Tensor> copies_;
  TensorView tensor_view(const std::string& name);
};

// ---- building blocks, exposed for tests

// Mirrors an H36M-17 2D pose (17 x 2 pixels): x -> 2*center_x - x, joints
// swapped by the H36M flip map. An involution.
void flip_pose2d_h36m(const float* in, float center_x, float* out);
// Mirrors an H36M-17 3D pose (17 x 3, camera frame): X -> -X, joints swapped.
// Mirroring the camera-frame X is the same as mirroring the image about the
// principal point, so both flips describe the same mirrored scene.
void flip_pose3d_h36m(const float* in, float* out);
// The attribute labels of the mirrored pose: the label of each joint moves to
// its mirror joint (left elbow <-> right elbow, ...); classes do not change,
// because mirroring reflects the torso-plane normal with the body.
void flip_attribute_labels(const int32_t* in9, int32_t* out9);
// Turns a camera-frame H36M-17 pose (17 x 3, absolute mm) by yaw_rad about the
// axis parallel to camera y through joint 0 (the pelvis): X' = P + Ry (X - P).
void rotate_pose3d_about_pelvis_y(const float* in, double yaw_rad, float* out);
// The possibly replaced label of (row, attribute) for a noisy source (pure
// function of its arguments: the same label every epoch).
int32_t noisy_attribute_label(int32_t gt, double accuracy, uint64_t seed, int64_t row, int attribute);

}  // namespace dofpose::train
