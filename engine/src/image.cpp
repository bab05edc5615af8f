// Photos into the stacked hourglass (dofpose/image.h).
#include "dofpose/image.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "dofpose/error.h"
#include "dofpose/skeleton.h"

// stb_image and stb_image_write, private to this file (static functions: no
// clash with the copy in demo.cpp or any other linked into a program).
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wshift-negative-value"
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace dofpose {

ImageRGB8 load_image_rgb(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  DOFPOSE_CHECK(fs::exists(path, ec), "image '", path, "': no such file");
  DOFPOSE_CHECK(!fs::is_directory(path, ec), "image '", path, "' is a folder, expected an image file");
  int w = 0, h = 0, channels = 0;
  unsigned char* data = stbi_load(path.c_str(), &w, &h, &channels, 3);
  DOFPOSE_CHECK(data != nullptr, "image '", path, "': cannot decode it (",
                stbi_failure_reason() ? stbi_failure_reason() : "unknown reason",
                "); formats read: JPEG, PNG, BMP, TGA, GIF, PSD, HDR, PNM");
  ImageRGB8 img;
  img.width = w;
  img.height = h;
  img.rgb.assign(data, data + size_t(w) * size_t(h) * 3);
  stbi_image_free(data);
  DOFPOSE_CHECK(w > 0 && h > 0, "image '", path, "' is empty (", w, "x", h, ")");
  return img;
}

Letterboxed letterbox(const ImageRGB8& image, int size, const std::vector<float>& mean) {
  DOFPOSE_CHECK(image.width > 0 && image.height > 0 &&
                    image.rgb.size() == size_t(image.width) * size_t(image.height) * 3,
                "letterbox: image of ", image.width, "x", image.height, " with ", image.rgb.size(),
                " bytes (expected width x height x 3)");
  DOFPOSE_CHECK(size > 0, "letterbox: size must be positive, got ", size);
  DOFPOSE_CHECK(mean.empty() || mean.size() == 3, "letterbox: the mean needs 3 values (R,G,B), got ",
                mean.size());
  const int W = image.width, H = image.height;
  const int longer = std::max(W, H);
  LetterboxTransform t;
  t.size = size;
  t.content_width = W == longer ? size : std::max(1, int(std::lround(double(W) * size / longer)));
  t.content_height = H == longer ? size : std::max(1, int(std::lround(double(H) * size / longer)));
  t.offset_x = (size - t.content_width) / 2;
  t.offset_y = (size - t.content_height) / 2;
  t.scale_x = double(t.content_width) / W;
  t.scale_y = double(t.content_height) / H;

  Letterboxed out;
  out.transform = t;
  out.tensor = Tensor::zeros({1, 3, size, size});
  float* dst = out.tensor.f32();
  const size_t plane = size_t(size) * size_t(size);
  auto px = [&](int x, int y, int c) { return float(image.rgb[(size_t(y) * size_t(W) + size_t(x)) * 3 + size_t(c)]); };
  for (int ty = t.offset_y; ty < t.offset_y + t.content_height; ++ty) {
    const double sy = std::clamp(t.to_image_y(ty), 0.0, double(H - 1));
    const int y0 = int(std::floor(sy)), y1 = std::min(y0 + 1, H - 1);
    const float fy = float(sy - y0);
    for (int tx = t.offset_x; tx < t.offset_x + t.content_width; ++tx) {
      const double sx = std::clamp(t.to_image_x(tx), 0.0, double(W - 1));
      const int x0 = int(std::floor(sx)), x1 = std::min(x0 + 1, W - 1);
      const float fx = float(sx - x0);
      for (int c = 0; c < 3; ++c) {
        const float top = px(x0, y0, c) * (1 - fx) + px(x1, y0, c) * fx;
        const float bottom = px(x0, y1, c) * (1 - fx) + px(x1, y1, c) * fx;
        float v = (top * (1 - fy) + bottom * fy) / 255.0f;
        if (!mean.empty()) v -= mean[size_t(c)];
        dst[size_t(c) * plane + size_t(ty) * size_t(size) + size_t(tx)] = v;
      }
    }
  }
  return out;
}

std::vector<float> heatmap_coords_to_image(const float* coords, int joints, int heatmap_size,
                                           const LetterboxTransform& t) {
  DOFPOSE_CHECK(heatmap_size > 0, "heatmap_coords_to_image: heatmap size must be positive");
  // Heatmap pixel c covers tensor pixels s*c .. s*c+s-1 (nn/pose_chain.h, step 3).
  const double s = double(t.size) / heatmap_size;
  std::vector<float> out(size_t(joints) * 2);
  for (int j = 0; j < joints; ++j) {
    const double ux = (coords[2 * j] + 0.5) * s - 0.5, uy = (coords[2 * j + 1] + 0.5) * s - 0.5;
    out[2 * size_t(j)] = float(t.to_image_x(ux));
    out[2 * size_t(j) + 1] = float(t.to_image_y(uy));
  }
  return out;
}

std::string mpii16_lift_input_json(const std::vector<float>& keypoints, int image_width,
                                   int image_height) {
  const int J = layout(LayoutId::MPII16).num_joints();
  DOFPOSE_CHECK(keypoints.size() == size_t(J) * 2, "mpii16 keypoints: ", keypoints.size() / 2,
                " joints, expected ", J);
  nlohmann::json root;
  root["layout"] = "mpii16";
  root["image_size"] = {image_width, image_height};
  nlohmann::json kps = nlohmann::json::array();
  for (int j = 0; j < J; ++j) {
    const float x = keypoints[2 * size_t(j)], y = keypoints[2 * size_t(j) + 1];
    DOFPOSE_CHECK(std::isfinite(x) && std::isfinite(y), "mpii16 keypoints: joint ", j, " (",
                  layout(LayoutId::MPII16).joints[size_t(j)], ") is not finite");
    kps.push_back({std::round(double(x) * 100.0) / 100.0, std::round(double(y) * 100.0) / 100.0, 1.0});
  }
  // One line per key, the frame on one line (as `dofpose lift` writes its frames).
  return "{\n \"layout\": " + root["layout"].dump() + ",\n \"image_size\": " +
         root["image_size"].dump() + ",\n \"frames\": [\n  " +
         nlohmann::json{{"keypoints", kps}}.dump() + "\n ]\n}\n";
}

namespace {
// stb_image_write's output callback: appends to the std::vector<unsigned char> in ctx.
void append_bytes(void* ctx, void* data, int n) {
  auto* bytes = static_cast<std::vector<unsigned char>*>(ctx);
  const auto* p = static_cast<const unsigned char*>(data);
  bytes->insert(bytes->end(), p, p + n);
}
}  // namespace

std::vector<unsigned char> encode_png(const ImageRGB8& image) {
  std::vector<unsigned char> bytes;
  DOFPOSE_CHECK(stbi_write_png_to_func(append_bytes, &bytes, image.width, image.height, 3, image.rgb.data(),
                                       image.width * 3) != 0,
                "cannot encode a ", image.width, "x", image.height, " PNG");
  return bytes;
}

std::vector<unsigned char> encode_jpeg(const ImageRGB8& image, int quality) {
  DOFPOSE_CHECK(quality >= 1 && quality <= 100, "JPEG quality must be in [1, 100], got ", quality);
  std::vector<unsigned char> bytes;
  DOFPOSE_CHECK(stbi_write_jpg_to_func(append_bytes, &bytes, image.width, image.height, 3, image.rgb.data(),
                                       quality) != 0,
                "cannot encode a ", image.width, "x", image.height, " JPEG");
  return bytes;
}

namespace {

void put_dot(ImageRGB8& im, int x, int y, const unsigned char* c, int r) {
  for (int dy = -r; dy <= r; ++dy)
    for (int dx = -r; dx <= r; ++dx) {
      if (dx * dx + dy * dy > r * r + r) continue;
      const int px = x + dx, py = y + dy;
      if (px < 0 || py < 0 || px >= im.width || py >= im.height) continue;
      std::copy_n(c, 3, &im.rgb[(size_t(py) * size_t(im.width) + size_t(px)) * 3]);
    }
}

// Bresenham, thickened; the end points clamped to a margin around the image
// so that a wild coordinate cannot make a long loop.
void put_line(ImageRGB8& im, double fx0, double fy0, double fx1, double fy1, const unsigned char* c, int r) {
  auto clampc = [&](double v, int n) { return int(std::lround(std::clamp(v, -double(n), 2.0 * n))); };
  int x0 = clampc(fx0, im.width), y0 = clampc(fy0, im.height);
  const int x1 = clampc(fx1, im.width), y1 = clampc(fy1, im.height);
  const int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
  const int dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    put_dot(im, x0, y0, c, r);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

}  // namespace

std::vector<unsigned char> mpii16_overlay_png(const ImageRGB8& image, const std::vector<float>& keypoints) {
  const Layout& L = layout(LayoutId::MPII16);
  const int J = L.num_joints();
  DOFPOSE_CHECK(keypoints.size() == size_t(J) * 2, "overlay: ", keypoints.size() / 2,
                " joints, expected ", J, " (MPII-16)");
  static const unsigned char kRed[3] = {230, 40, 40}, kBlue[3] = {40, 90, 235},
                             kGreen[3] = {40, 200, 70}, kWhite[3] = {255, 255, 255};
  auto colour = [&](int j) {
    const int f = L.flip[size_t(j)];
    if (f == j) return kGreen;
    return L.joints[size_t(j)].rfind("right", 0) == 0 ? kRed : kBlue;
  };
  ImageRGB8 im = image;
  const int r = std::max(1, std::max(im.width, im.height) / 300);
  auto X = [&](int j) { return double(keypoints[2 * size_t(j)]); };
  auto Y = [&](int j) { return double(keypoints[2 * size_t(j) + 1]); };
  for (int j = 0; j < J; ++j) {
    const int p = L.parents[size_t(j)];
    if (p >= 0 && std::isfinite(X(p)) && std::isfinite(Y(p)) && std::isfinite(X(j)) && std::isfinite(Y(j)))
      put_line(im, X(p), Y(p), X(j), Y(j), colour(j), r);
  }
  for (int j = 0; j < J; ++j) {
    if (!std::isfinite(X(j)) || !std::isfinite(Y(j))) continue;
    const int x = int(std::lround(std::clamp(X(j), -1e6, 1e6))), y = int(std::lround(std::clamp(Y(j), -1e6, 1e6)));
    put_dot(im, x, y, kWhite, 2 * r + 1);
    put_dot(im, x, y, colour(j), 2 * r);
  }
  return encode_png(im);
}

}  // namespace dofpose
