// The smallest program that embeds dofpose: lift one 2D pose (H36M-17
// joints in pixels) to 3D with the engine's built-in lifter. Built against
// the installed package by tests/embed/check_install.cmake.
#include <cmath>
#include <cstdio>

#include <dofpose/lift.h>

int main() {
  // A person standing upright, facing the camera, in a 1000 x 1000 image
  // (their left side on the image's right).
  const float xy[17][2] = {
      {500, 500}, {470, 500}, {470, 600}, {470, 700},  // pelvis, right hip, knee, ankle
      {530, 500}, {530, 600}, {530, 700},              // left hip, knee, ankle
      {500, 450}, {500, 400}, {500, 380}, {500, 350},  // spine, thorax, neck/nose, head
      {540, 400}, {560, 450}, {570, 500},              // left shoulder, elbow, wrist
      {460, 400}, {440, 450}, {430, 500}};             // right shoulder, elbow, wrist
  dofpose::LiftInput in;
  in.layout = dofpose::LayoutId::H36M17;
  in.frames = 1;
  for (const auto& joint : xy) in.keypoints.insert(in.keypoints.end(), {joint[0], joint[1]});
  in.image_width = in.image_height = 1000;

  dofpose::PoseLifter lifter = dofpose::PoseLifter::from_default();
  const dofpose::LiftResult result = lifter.lift(in);
  const auto& j = result.frames.at(0).joints;  // H36M-17 x (x, y, z), mm, y down, pelvis at 0
  for (float v : j)
    if (!std::isfinite(v)) return std::puts("non-finite output"), 1;
  const float head_y = j[10 * 3 + 1], ankle_y = j[3 * 3 + 1];
  std::printf("lifted with %s: head y %.0f mm, right ankle y %.0f mm\n", lifter.source().c_str(),
              head_y, ankle_y);
  // Upright: the head above the pelvis, the ankle below it, a body's height apart.
  const bool upright = j[0] == 0 && j[1] == 0 && j[2] == 0 && head_y < -300 && ankle_y > 500;
  std::puts(upright ? "upright pose: ok" : "not an upright pose");
  return upright ? 0 : 1;
}
