#include "dofpose/train/dataset.h"

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "dofpose/nn/linear.h"
#include "dofpose/skeleton.h"

namespace dofpose::train {

namespace {

constexpr int kJ = h36m::kNumJoints;

struct KnownTensor {
  const char* name;
  DType dtype;
  std::vector<int64_t> tail;  // dims after M
};

const std::vector<KnownTensor>& known_tensors() {
  static const std::vector<KnownTensor> t = {
      {"pose3d_cam", DType::F32, {kJ, 3}}, {"pose2d_gt", DType::F32, {kJ, 2}},
      {"pose2d_sh", DType::F32, {16, 2}},  {"attributes", DType::U8, {kNumAttributeJoints}},
      {"subject", DType::I32, {}},         {"action", DType::I32, {}},
      {"camera", DType::I32, {}},          {"frame", DType::I32, {}}};
  return t;
}

std::string expected_shape(const KnownTensor& k) {
  std::string s = "[M";
  for (int64_t d : k.tail) s += "," + std::to_string(d);
  return s + "]";
}

// Index of each attribute's mirror attribute (via the H36M flip map).
const std::array<int, kNumAttributeJoints>& attribute_flip() {
  static const std::array<int, kNumAttributeJoints> map = [] {
    std::array<int, kNumAttributeJoints> m{};
    const Layout& h = layout(LayoutId::H36M17);
    for (int a = 0; a < kNumAttributeJoints; ++a) {
      const int mirror = h.flip[kAttributeJoints[a]];
      m[a] = -1;
      for (int b = 0; b < kNumAttributeJoints; ++b)
        if (kAttributeJoints[b] == mirror) m[a] = b;
      DOFPOSE_CHECK(m[a] >= 0, "attribute flip: the mirror of attribute joint ", a,
                    " is not an attribute joint");
    }
    return m;
  }();
  return map;
}

double unit_double(uint64_t h) { return double(h >> 11) * (1.0 / 9007199254740992.0); }

}  // namespace

// ---------------------------------------------------------------- attributes

AttributeSource AttributeSource::parse(const std::string& text, const std::string& field) {
  AttributeSource a;
  if (text == "none") return a;
  if (text == "gt") {
    a.kind = Kind::GroundTruth;
    return a;
  }
  const std::string prefix = "noisy:";
  if (text.compare(0, prefix.size(), prefix) == 0) {
    const std::string p = text.substr(prefix.size());
    char* end = nullptr;
    const double v = p.empty() ? NAN : std::strtod(p.c_str(), &end);
    DOFPOSE_CHECK(!p.empty() && end && *end == '\0' && v >= 0.0 && v <= 1.0, field,
                  ": \"", text, "\": the accuracy after \"noisy:\" must be a number in [0, 1]");
    a.kind = Kind::Noisy;
    a.accuracy = v;
    return a;
  }
  fail(field, ": expected \"none\", \"gt\" or \"noisy:P\" (P in [0, 1]), got \"", text, "\"");
}

std::string AttributeSource::str() const {
  switch (kind) {
    case Kind::None: return "none";
    case Kind::GroundTruth: return "gt";
    case Kind::Noisy: {
      nlohmann::json j = accuracy;  // shortest round-trip form
      return "noisy:" + j.dump();
    }
  }
  return "none";
}

int32_t noisy_attribute_label(int32_t gt, double accuracy, uint64_t seed, int64_t row,
                              int attribute) {
  const uint64_t h = nn::mix_seed(seed, uint64_t(row) * kNumAttributeJoints + uint64_t(attribute));
  if (unit_double(h) < accuracy) return gt;
  // One of the two other classes, from an independent bit of a second hash.
  const int32_t offset = 1 + int32_t(nn::mix_seed(h, 1) & 1);
  return (gt + offset) % 3;
}

// ---------------------------------------------------------------- flips

void flip_pose2d_h36m(const float* in, float center_x, float* out) {
  flip_joints(layout(LayoutId::H36M17), in, 2, out);
  for (int j = 0; j < kJ; ++j) out[j * 2] = 2.f * center_x - out[j * 2];
}

void flip_pose3d_h36m(const float* in, float* out) {
  flip_joints(layout(LayoutId::H36M17), in, 3, out);
  for (int j = 0; j < kJ; ++j) out[j * 3] = -out[j * 3];
}

void flip_attribute_labels(const int32_t* in9, int32_t* out9) {
  const auto& m = attribute_flip();
  for (int a = 0; a < kNumAttributeJoints; ++a) out9[a] = in9[m[a]];
}

// ---------------------------------------------------------------- virtual cameras

void rotate_pose3d_about_pelvis_y(const float* in, double yaw_rad, float* out) {
  const double c = std::cos(yaw_rad), s = std::sin(yaw_rad);
  const double px = in[0], pz = in[2];  // y is the axis: unchanged
  for (int j = 0; j < kJ; ++j) {
    const double x = in[j * 3] - px, y = in[j * 3 + 1], z = in[j * 3 + 2] - pz;
    out[j * 3] = float(px + c * x + s * z);
    out[j * 3 + 1] = float(y);
    out[j * 3 + 2] = float(pz - s * x + c * z);
  }
}

void LifterDataset::load_cameras() {
  const std::string& p = path();
  for (const char* t : {"subject", "camera"})
    DOFPOSE_CHECK(file_.has(t), "dataset ", p, ": tensor '", t,
                  "' is missing (needed for data.virtual_cameras)");
  const auto& md = file_.metadata();
  for (const char* k : {"subjects", "cameras"})
    DOFPOSE_CHECK(md.find(k) != md.end(), "dataset ", p, ": metadata has no '", k,
                  "' (needed for data.virtual_cameras)");
  std::vector<std::string> subjects, ids;
  nlohmann::json per_subject;
  try {
    subjects = nlohmann::json::parse(md.at("subjects")).get<std::vector<std::string>>();
    const nlohmann::json cams = nlohmann::json::parse(md.at("cameras"));
    ids = cams.at("ids").get<std::vector<std::string>>();
    per_subject = cams.at("per_subject");
  } catch (const nlohmann::json::exception& e) {
    fail("dataset ", p, ": metadata 'subjects' must be a JSON list of names and 'cameras' a JSON ",
         "object {\"ids\": [...], \"per_subject\": {subject: {id: {f_px, c_px, k_radial, ",
         "p_tangential, ...}}}}: ", e.what());
  }
  camera_ids_ = int64_t(ids.size());
  cameras_.assign(subjects.size() * ids.size(), Camera{});
  // Only the combinations rows use are required (and checked).
  subject_ = tensor_view("subject");
  camera_ = tensor_view("camera");
  std::vector<char> loaded(cameras_.size(), 0);
  for (int64_t r = 0; r < rows_in_file_; ++r) {
    const int32_t s = subject_.i32()[r], c = camera_.i32()[r];
    DOFPOSE_CHECK(s >= 0 && s < int64_t(subjects.size()) && c >= 0 && c < camera_ids_, "dataset ",
                  p, ": row ", r, " has subject ", s, " and camera ", c, ", expected indices into the ",
                  subjects.size(), " metadata 'subjects' and the ", ids.size(), " 'cameras.ids'");
    const size_t k = size_t(s * camera_ids_ + c);
    if (loaded[k]) continue;
    const std::string where = "dataset " + p + ": metadata 'cameras' subject '" + subjects[size_t(s)] +
                              "' camera '" + ids[size_t(c)] + "'";
    Camera cam;
    cam.id = ids[size_t(c)];
    cam.R = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    try {
      const nlohmann::json& j = per_subject.at(subjects[size_t(s)]).at(ids[size_t(c)]);
      const auto f = j.at("f_px").get<std::vector<double>>();
      const auto cc = j.at("c_px").get<std::vector<double>>();
      const auto kk = j.at("k_radial").get<std::vector<double>>();
      const auto pp = j.at("p_tangential").get<std::vector<double>>();
      DOFPOSE_CHECK(f.size() == 2 && cc.size() == 2 && kk.size() == 3 && pp.size() == 2, where,
                    ": f_px, c_px, k_radial, p_tangential must hold 2, 2, 3, 2 numbers");
      std::copy_n(f.begin(), 2, cam.f.begin());
      std::copy_n(cc.begin(), 2, cam.c.begin());
      std::copy_n(kk.begin(), 3, cam.k.begin());
      std::copy_n(pp.begin(), 2, cam.p.begin());
    } catch (const nlohmann::json::exception& e) {
      fail(where, ": missing or malformed intrinsics: ", e.what());
    }
    DOFPOSE_CHECK(cam.f[0] > 0 && cam.f[1] > 0, where, ": f_px must be positive");
    cameras_[k] = cam;
    loaded[k] = 1;
  }
}

const Camera& LifterDataset::camera_of(int64_t i) const {
  DOFPOSE_CHECK(options_.virtual_cameras, "dataset ", path(),
                ": camera_of needs DatasetOptions::virtual_cameras");
  DOFPOSE_CHECK(i >= 0 && i < size(), "dataset ", path(), ": sample ", i, " out of range [0, ",
                size(), ")");
  const int64_t row = rows_[size_t(i)];
  return cameras_[size_t(subject_.i32()[row] * camera_ids_ + camera_.i32()[row])];
}

// ---------------------------------------------------------------- dataset

TensorView LifterDataset::tensor_view(const std::string& name) {
  const WeightsEntry& e = file_.entry(name);
  const uint64_t size = dtype_size(e.dtype);
  // raw() needs the tensor aligned to its element size; files from other
  // writers may not be, so copy those.
  if (e.begin % size == 0) {
    try {
      return file_.raw(name);
    } catch (const Error&) {
    }
  }
  copies_.push_back(file_.load_copy(name));
  return copies_.back().view();
}

LifterDataset::LifterDataset(const std::string& path, const DatasetOptions& options)
    : options_(options) {
  DOFPOSE_CHECK(options.input == "sh" || options.input == "gt", "dataset ", path,
                ": input must be \"sh\" or \"gt\", got \"", options.input, "\"");
  DOFPOSE_CHECK(options.num_joints_in == 16 || options.num_joints_in == 17, "dataset ", path,
                ": num_joints_in must be 16 or 17, got ", options.num_joints_in);
  DOFPOSE_CHECK(options.subsample >= 1, "dataset ", path, ": subsample must be >= 1, got ",
                options.subsample);
  DOFPOSE_CHECK(!options.virtual_cameras || options.input == "gt", "dataset ", path,
                ": virtual cameras need input \"gt\" (detections cannot be re-synthesised)");
  DOFPOSE_CHECK(options.max_samples >= 0, "dataset ", path,
                ": max_samples must be >= 0 (0 = all), got ", options.max_samples);
  try {
    file_ = WeightsFile(path);
  } catch (const Error& e) {
    fail("dataset: cannot open ", path, ": ", e.what());
  }

  // Which tensors this run needs; every known tensor present is checked anyway.
  std::vector<std::string> required = {"pose3d_cam", "action",
                                       options.input == "sh" ? "pose2d_sh" : "pose2d_gt"};
  if (options.attributes.used()) required.push_back("attributes");
  for (const auto& r : required)
    DOFPOSE_CHECK(file_.has(r), "dataset ", path, ": tensor '", r, "' is missing (needed for ",
                  r == "attributes" ? "attribute inputs" : r.rfind("pose2d", 0) == 0
                                                              ? "input \"" + options.input + "\""
                                                              : std::string("training"),
                  ")");
  rows_in_file_ = file_.entry("pose3d_cam").shape.ndim >= 1 ? file_.entry("pose3d_cam").shape[0] : 0;
  for (const KnownTensor& k : known_tensors()) {
    if (!file_.has(k.name)) continue;
    const WeightsEntry& e = file_.entry(k.name);
    DOFPOSE_CHECK(e.dtype == k.dtype, "dataset ", path, ": tensor '", k.name, "' has dtype ",
                  dtype_name(e.dtype), ", expected ", dtype_name(k.dtype));
    bool ok = e.shape.ndim == 1 + int(k.tail.size()) && e.shape[0] == rows_in_file_;
    for (size_t d = 0; ok && d < k.tail.size(); ++d) ok = e.shape[int(d) + 1] == k.tail[d];
    DOFPOSE_CHECK(ok, "dataset ", path, ": tensor '", k.name, "' has shape ", e.shape.str(),
                  ", expected ", expected_shape(k), " with M = ", rows_in_file_,
                  " (the rows of pose3d_cam)");
  }
  DOFPOSE_CHECK(rows_in_file_ >= 1, "dataset ", path, ": pose3d_cam has no rows");

  // Action names (metadata "actions", a JSON list of strings).
  const auto it = file_.metadata().find("actions");
  DOFPOSE_CHECK(it != file_.metadata().end(), "dataset ", path,
                ": metadata has no 'actions' (JSON list of action names)");
  try {
    actions_ = nlohmann::json::parse(it->second).get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    fail("dataset ", path, ": metadata 'actions' must be a JSON list of strings: ", e.what());
  }

  pose3d_ = tensor_view("pose3d_cam");
  pose2d_ = tensor_view(options.input == "sh" ? "pose2d_sh" : "pose2d_gt");
  action_ = tensor_view("action");
  if (options.attributes.used()) attributes_ = tensor_view("attributes");

  const int32_t* act = action_.i32();
  for (int64_t r = 0; r < rows_in_file_; ++r)
    DOFPOSE_CHECK(act[r] >= 0 && act[r] < int64_t(actions_.size()), "dataset ", path,
                  ": tensor 'action' row ", r, " is ", act[r], ", expected an index into the ",
                  actions_.size(), " names of metadata 'actions'");
  if (options.attributes.used()) {
    const uint8_t* at = attributes_.u8();
    for (int64_t k = 0; k < rows_in_file_ * kNumAttributeJoints; ++k)
      DOFPOSE_CHECK(at[k] <= 2, "dataset ", path, ": tensor 'attributes' row ",
                    k / kNumAttributeJoints, " attribute ", k % kNumAttributeJoints, " is ",
                    int(at[k]), ", expected 0 (front), 1 (back) or 2 (on-plane)");
  }

  // Selection: every subsample-th row, then at most max_samples evenly spaced.
  std::vector<int64_t> sub;
  for (int64_t r = 0; r < rows_in_file_; r += options.subsample) sub.push_back(r);
  if (options.max_samples > 0 && int64_t(sub.size()) > options.max_samples) {
    const int64_t n = int64_t(sub.size());
    for (int64_t i = 0; i < options.max_samples; ++i)
      rows_.push_back(sub[size_t(i * n / options.max_samples)]);
  } else {
    rows_ = std::move(sub);
  }

  for (int j = 0; j < kJ; ++j)
    if (options.num_joints_in == 17 || j != h36m::kNeckNose) input_joints_.push_back(j);
  if (options.virtual_cameras) load_cameras();
}

void LifterDataset::attribute_labels(int64_t i, int32_t* labels9) const {
  const int64_t row = rows_[size_t(i)];
  const uint8_t* gt = attributes_.u8() + row * kNumAttributeJoints;
  for (int a = 0; a < kNumAttributeJoints; ++a) {
    labels9[a] = gt[a];
    if (options_.attributes.kind == AttributeSource::Kind::Noisy)
      labels9[a] = noisy_attribute_label(gt[a], options_.attributes.accuracy,
                                         options_.noise_seed, row, a);
  }
}

void LifterDataset::get(int64_t i, bool flip, float* pose2d, float* attributes,
                        float* pose3d) const {
  DOFPOSE_CHECK(i >= 0 && i < size(), "dataset ", path(), ": sample ", i, " out of range [0, ",
                size(), ")");
  const int64_t row = rows_[size_t(i)];
  float p2[kJ * 2], p3[kJ * 3];
  if (options_.input == "sh") {
    static const LayoutMap& mpii_to_h36m = layout_map(LayoutId::MPII16, LayoutId::H36M17);
    map_joints(mpii_to_h36m, pose2d_.f32() + row * 16 * 2, 2, p2);
  } else {
    std::copy_n(pose2d_.f32() + row * kJ * 2, kJ * 2, p2);
  }
  const float* src3 = pose3d_.f32() + row * kJ * 3;
  for (int j = 0; j < kJ; ++j)
    for (int c = 0; c < 3; ++c) p3[j * 3 + c] = src3[j * 3 + c] - src3[c];  // pelvis-relative
  finish_sample(i, flip, p2, p3, pose2d, attributes, pose3d);
}

void LifterDataset::get_virtual(int64_t i, bool flip, double yaw_rad, float* pose2d,
                                float* attributes, float* pose3d) const {
  const Camera& cam = camera_of(i);  // checks i and the option
  const int64_t row = rows_[size_t(i)];
  float turned[kJ * 3], p2[kJ * 2], p3[kJ * 3];
  rotate_pose3d_about_pelvis_y(pose3d_.f32() + row * kJ * 3, yaw_rad, turned);
  for (int j = 0; j < kJ; ++j)
    if (turned[j * 3 + 2] < 100.f) return get(i, flip, pose2d, attributes, pose3d);
  for (int j = 0; j < kJ; ++j) {
    const Vec2 uv = camera_to_pixels(cam, {turned[j * 3], turned[j * 3 + 1], turned[j * 3 + 2]});
    p2[j * 2] = float(uv[0]);
    p2[j * 2 + 1] = float(uv[1]);
    for (int c = 0; c < 3; ++c) p3[j * 3 + c] = turned[j * 3 + c] - turned[c];
  }
  finish_sample(i, flip, p2, p3, pose2d, attributes, pose3d);
}

void LifterDataset::finish_sample(int64_t i, bool flip, float* p2, float* p3, float* pose2d,
                                  float* attributes, float* pose3d) const {
  float tmp[kJ * 3];
  if (flip) {
    flip_pose2d_h36m(p2, options_.flip_center_x, tmp);
    std::copy_n(tmp, kJ * 2, p2);
    flip_pose3d_h36m(p3, tmp);
    std::copy_n(tmp, kJ * 3, p3);
  }
  for (size_t k = 0; k < input_joints_.size(); ++k) {
    pose2d[k * 2] = p2[input_joints_[k] * 2];
    pose2d[k * 2 + 1] = p2[input_joints_[k] * 2 + 1];
  }
  std::copy_n(p3, kJ * 3, pose3d);
  if (options_.attributes.used() && attributes) {
    int32_t labels[kNumAttributeJoints], flipped[kNumAttributeJoints];
    attribute_labels(i, labels);
    if (flip) {
      flip_attribute_labels(labels, flipped);
      std::copy_n(flipped, kNumAttributeJoints, labels);
    }
    for (int a = 0; a < kNumAttributeJoints; ++a)
      for (int k = 0; k < 3; ++k) attributes[a * 3 + k] = labels[a] == k ? 1.f : 0.f;
  }
}

int32_t LifterDataset::action(int64_t i) const { return action_.i32()[rows_[size_t(i)]]; }

const std::string& LifterDataset::action_name(int64_t i) const {
  return actions_[size_t(action(i))];
}

}  // namespace dofpose::train
