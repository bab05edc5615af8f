// `dofpose demo`: synthetic poses seen by an H36M-like camera, written as
// `dofpose lift` inputs (H36M-17 and COCO-17 layouts), lifted with the same
// code path as `dofpose lift` (the embedded default model unless told
// otherwise), and compared with the known 3D answer. See docs/lift.md, "Demo".
#pragma once
#include <string>
#include <vector>

namespace dofpose {

struct DemoOptions {
  std::string out_dir = "dofpose-demo";
  std::string model;       // "" = the embedded default lifter
  bool write_png = true;   // one picture per pose and view
  unsigned seed = 0;       // the poses' random variation
};

struct DemoRow {
  std::string pose, layout;
  double yaw_deg = 0;
  double mpjpe_mm = 0, p_mpjpe_mm = 0;
};

struct DemoResult {
  std::vector<DemoRow> rows;
  std::vector<std::string> files;  // every file written, in order
  std::string model_source, model_status;
};

DemoResult run_demo(const DemoOptions& opt);
// The rows as a text table, one line per pose and view, a column pair per layout.
std::string format_demo_table(const DemoResult& r);

}  // namespace dofpose
