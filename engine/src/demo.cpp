// `dofpose demo` as a library function (dofpose/demo.h).
#include "dofpose/demo.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dofpose/camera.h"
#include "dofpose/error.h"
#include "dofpose/image.h"
#include "dofpose/lift.h"
#include "dofpose/metrics.h"
#include "dofpose/skeleton.h"
#include "dofpose/synthetic_pose.h"

namespace dofpose {

namespace {

using json = nlohmann::json;

constexpr double kViewsDeg[] = {0.0, 60.0, -120.0};

struct DemoFrame {
  NamedPose pose;
  double yaw;
  Camera cam;
  std::array<float, 51> gt;  // camera frame, pelvis-relative, mm
  std::vector<float> h36m2d, coco2d;
};

std::string input_json(const std::vector<DemoFrame>& frames, bool coco) {
  json root;
  root["layout"] = coco ? "coco17" : "h36m17";
  root["image_size"] = {1000, 1000};
  root["camera"] = {{"f", {1145.0, 1145.0}}, {"c", {512.0, 515.0}}};
  json fs = json::array();
  for (const DemoFrame& f : frames) {
    const std::vector<float>& p = coco ? f.coco2d : f.h36m2d;
    json kps = json::array();
    for (size_t j = 0; j < p.size() / 2; ++j)
      kps.push_back({std::round(p[2 * j] * 100.0) / 100.0, std::round(p[2 * j + 1] * 100.0) / 100.0, 1.0});
    fs.push_back({{"keypoints", kps}});
  }
  root["frames"] = fs;
  return root.dump(1) + "\n";
}

// ---- a tiny RGB canvas

struct Canvas {
  int w, h;
  std::vector<unsigned char> rgb;
  Canvas(int w_, int h_) : w(w_), h(h_), rgb(size_t(w_) * size_t(h_) * 3, 255) {}
  void dot(int x, int y, const unsigned char* c, int r) {
    for (int dy = -r; dy <= r; ++dy)
      for (int dx = -r; dx <= r; ++dx) {
        const int px = x + dx, py = y + dy;
        if (px < 0 || py < 0 || px >= w || py >= h) continue;
        std::copy_n(c, 3, &rgb[(size_t(py) * size_t(w) + size_t(px)) * 3]);
      }
  }
  // Bresenham, thickened.
  void line(int x0, int y0, int x1, int y1, const unsigned char* c, int r) {
    const int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    const int dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (int guard = 0; guard < 100000; ++guard) {
      dot(x0, y0, c, r);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) err += dy, x0 += sx;
      if (e2 <= dx) err += dx, y0 += sy;
    }
  }
};

const unsigned char kGrey[3] = {175, 175, 175}, kRed[3] = {205, 45, 45}, kBlue[3] = {40, 80, 210},
                    kGreen[3] = {30, 140, 60}, kBorder[3] = {90, 90, 90};

const unsigned char* joint_colour(int j) {
  switch (j) {
    case h36m::kRightHip: case h36m::kRightKnee: case h36m::kRightAnkle:
    case h36m::kRightShoulder: case h36m::kRightElbow: case h36m::kRightWrist: return kRed;
    case h36m::kLeftHip: case h36m::kLeftKnee: case h36m::kLeftAnkle:
    case h36m::kLeftShoulder: case h36m::kLeftElbow: case h36m::kLeftWrist: return kBlue;
    default: return kGreen;
  }
}

// Draws 2D skeletons (17 x 2 each; the first grey, the rest coloured) into a
// square panel at x offset `x0`, all scaled by one common fit.
void draw_panel(Canvas& cv, int x0, int size, const std::vector<std::vector<double>>& poses) {
  double lo[2] = {1e30, 1e30}, hi[2] = {-1e30, -1e30};
  for (const auto& p : poses)
    for (size_t j = 0; j < 17; ++j)
      for (int k = 0; k < 2; ++k) lo[k] = std::min(lo[k], p[2 * j + size_t(k)]), hi[k] = std::max(hi[k], p[2 * j + size_t(k)]);
  const double span = std::max({hi[0] - lo[0], hi[1] - lo[1], 1e-6});
  const double s = 0.85 * size / span;
  const double ox = x0 + 0.5 * size - s * 0.5 * (lo[0] + hi[0]), oy = 0.5 * size - s * 0.5 * (lo[1] + hi[1]);
  const Layout& h = layout(LayoutId::H36M17);
  for (size_t i = 0; i < poses.size(); ++i) {
    const auto& p = poses[i];
    auto X = [&](int j) { return int(std::lround(ox + s * p[2 * size_t(j)])); };
    auto Y = [&](int j) { return int(std::lround(oy + s * p[2 * size_t(j) + 1])); };
    for (int j = 1; j < 17; ++j) {
      const int par = h.parents[size_t(j)];
      cv.line(X(par), Y(par), X(j), Y(j), i == 0 ? kGrey : joint_colour(j), i == 0 ? 2 : 1);
    }
  }
  for (int y = 0; y < size; ++y) cv.dot(x0, y, kBorder, 0);
}

// Input 2D | front view (camera x-y) | side view (depth-y) of the result,
// with the known answer in grey behind it.
void write_png(const std::string& path, const DemoFrame& f, const std::array<float, 51>& pred) {
  constexpr int kPanel = 320;
  Canvas cv(3 * kPanel, kPanel);
  std::vector<double> in2d(f.h36m2d.begin(), f.h36m2d.end());
  draw_panel(cv, 0, kPanel, {in2d, in2d});  // grey under colour: the input itself
  std::vector<double> gt_front(34), pr_front(34), gt_side(34), pr_side(34);
  for (size_t j = 0; j < 17; ++j) {
    gt_front[2 * j] = f.gt[3 * j], gt_front[2 * j + 1] = f.gt[3 * j + 1];
    pr_front[2 * j] = pred[3 * j], pr_front[2 * j + 1] = pred[3 * j + 1];
    gt_side[2 * j] = f.gt[3 * j + 2], gt_side[2 * j + 1] = f.gt[3 * j + 1];
    pr_side[2 * j] = pred[3 * j + 2], pr_side[2 * j + 1] = pred[3 * j + 1];
  }
  draw_panel(cv, kPanel, kPanel, {gt_front, pr_front});
  draw_panel(cv, 2 * kPanel, kPanel, {gt_side, pr_side});
  ImageRGB8 image;
  image.width = cv.w;
  image.height = cv.h;
  image.rgb = std::move(cv.rgb);
  const std::vector<unsigned char> png = encode_png(image);
  write_file_atomically(path, std::string(png.begin(), png.end()));
}

std::vector<std::array<float, 51>> read_lifted(const std::string& path) {
  std::ifstream in(path);
  json j = json::parse(in);
  std::vector<std::array<float, 51>> out;
  for (const json& f : j.at("frames")) {
    std::array<float, 51> p{};
    for (size_t k = 0; k < 17; ++k)
      for (size_t c = 0; c < 3; ++c) p[3 * k + c] = f.at("joints").at(k).at(c).get<float>();
    out.push_back(p);
  }
  return out;
}

// Steps 1-3 of run_demo into its (existing) folder; every file it writes goes
// into `written` first, so that a failure can remove it.
DemoResult run_demo_into(const DemoOptions& opt, PoseLifter& lifter, std::vector<std::string>& written) {
  namespace fs = std::filesystem;
  // 1. Poses, cameras, the known answer and the 2D.
  std::vector<DemoFrame> frames;
  unsigned k = 0;
  for (NamedPose p : all_named_poses())
    for (double yaw : kViewsDeg) {
      DemoFrame f;
      f.pose = p;
      f.yaw = yaw;
      const std::array<float, 51> body = synthetic_pose(p, opt.seed * 1000u + k++, 4.f, 0.03f);
      const std::array<float, 51> world = place_on_ground(body);
      f.cam = synthetic_camera(world, yaw);
      const std::vector<float> gt = world_to_root_relative_camera(f.cam, world.data(), 1, 17);
      std::copy_n(gt.begin(), 51, f.gt.begin());
      f.h36m2d.resize(34);
      project_world_to_pixels(f.cam, world.data(), 17, f.h36m2d.data(), false);
      const std::array<float, 51> coco3d = coco17_keypoints_3d(world);
      f.coco2d.resize(34);
      project_world_to_pixels(f.cam, coco3d.data(), 17, f.coco2d.data(), false);
      frames.push_back(std::move(f));
    }

  // 2. Inputs, lifted through run_lift (the `dofpose lift` code path).
  DemoResult result;
  result.model_source = lifter.source();
  result.model_status = lifter.status();
  std::map<std::string, std::vector<std::array<float, 51>>> lifted;
  for (bool coco : {false, true}) {
    const std::string lname = coco ? "coco17" : "h36m17";
    const std::string in_path = (fs::path(opt.out_dir) / ("input_" + lname + ".json")).string();
    const std::string out_path = (fs::path(opt.out_dir) / ("lifted_" + lname + ".json")).string();
    written.push_back(in_path);
    written.push_back(out_path);
    write_file_atomically(in_path, input_json(frames, coco));
    result.files.push_back(in_path);
    LiftRunOptions lo;
    lo.input = in_path;
    lo.output = out_path;
    run_lift(lo, lifter);
    result.files.push_back(out_path);
    lifted[lname] = read_lifted(out_path);
    DOFPOSE_CHECK(lifted[lname].size() == frames.size(), "demo: ", out_path, " has ",
                  lifted[lname].size(), " frames, expected ", frames.size());
  }

  // 3. Errors against the known answer, and pictures.
  for (size_t i = 0; i < frames.size(); ++i) {
    const DemoFrame& f = frames[i];
    for (const char* lname : {"h36m17", "coco17"}) {
      const std::array<float, 51>& pred = lifted[lname][i];
      result.rows.push_back({named_pose_name(f.pose), lname, f.yaw, mpjpe(pred.data(), f.gt.data()),
                             p_mpjpe(pred.data(), f.gt.data())});
    }
    if (opt.write_png) {
      char name[96];
      std::snprintf(name, sizeof name, "pose%02zu_%s_yaw%+04d.png", i, named_pose_name(f.pose), int(f.yaw));
      const std::string path = (fs::path(opt.out_dir) / name).string();
      written.push_back(path);
      write_png(path, f, lifted["h36m17"][i]);
      result.files.push_back(path);
    }
  }
  return result;
}

}  // namespace

DemoResult run_demo(const DemoOptions& opt) {
  namespace fs = std::filesystem;
  // The model first: one that cannot run the demo fails before anything is written.
  PoseLifter lifter = opt.model.empty() ? PoseLifter::from_default() : PoseLifter::from_file(opt.model);
  DOFPOSE_CHECK(!lifter.config().use_attributes, "demo: model ", lifter.source(),
                " uses torso-plane attributes (config use_attributes), which the demo's "
                "generated 2D does not have; give a lifter without attributes");
  std::error_code ec;
  const bool created_dir = !fs::exists(opt.out_dir, ec);
  fs::create_directories(opt.out_dir, ec);
  DOFPOSE_CHECK(!ec && fs::is_directory(opt.out_dir), "demo: cannot create output directory '",
                opt.out_dir, "': ", ec.message());
  std::vector<std::string> written;  // this run's files, removed if it fails
  try {
    return run_demo_into(opt, lifter, written);
  } catch (...) {
    if (created_dir) fs::remove_all(opt.out_dir, ec);
    else
      for (const std::string& f : written) fs::remove(f, ec);
    throw;
  }
}

std::string format_demo_table(const DemoResult& r) {
  std::ostringstream s;
  char line[160];
  std::snprintf(line, sizeof line, "%-12s %6s  %21s  %21s\n", "pose", "yaw", "h36m17 input (mm)", "coco17 input (mm)");
  s << line;
  std::snprintf(line, sizeof line, "%-12s %6s  %10s %10s  %10s %10s\n", "", "(deg)", "MPJPE", "P-MPJPE", "MPJPE", "P-MPJPE");
  s << line;
  for (size_t i = 0; i + 1 < r.rows.size(); i += 2) {
    const DemoRow &a = r.rows[i], &b = r.rows[i + 1];
    std::snprintf(line, sizeof line, "%-12s %6.0f  %10.1f %10.1f  %10.1f %10.1f\n", a.pose.c_str(), a.yaw_deg,
                  a.mpjpe_mm, a.p_mpjpe_mm, b.mpjpe_mm, b.p_mpjpe_mm);
    s << line;
  }
  double sum[4] = {0, 0, 0, 0};
  const double n = double(r.rows.size() / 2);
  for (size_t i = 0; i + 1 < r.rows.size(); i += 2)
    sum[0] += r.rows[i].mpjpe_mm, sum[1] += r.rows[i].p_mpjpe_mm, sum[2] += r.rows[i + 1].mpjpe_mm,
        sum[3] += r.rows[i + 1].p_mpjpe_mm;
  if (n > 0) {
    std::snprintf(line, sizeof line, "%-12s %6s  %10.1f %10.1f  %10.1f %10.1f\n", "mean", "", sum[0] / n,
                  sum[1] / n, sum[2] / n, sum[3] / n);
    s << line;
  }
  return s.str();
}

}  // namespace dofpose
