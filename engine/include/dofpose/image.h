// Photos into the stacked hourglass (`dofpose forward --image`, docs/cli.md):
// decoding (stb_image), letterboxing into the network's square input, mapping
// the soft-argmax joints back to the photo's pixels, and the outputs built on
// them: a `dofpose lift` input file (docs/lift.md) and an overlay picture.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "dofpose/tensor.h"

namespace dofpose {

// An 8-bit RGB picture, rows top to bottom, 3 bytes per pixel.
struct ImageRGB8 {
  int width = 0, height = 0;
  std::vector<unsigned char> rgb;  // height x width x 3
};

// Decodes any format stb_image reads (JPEG, PNG, BMP, TGA, GIF's first frame,
// PSD, HDR, PNM) to RGB (grey and alpha converted). Errors name the file.
ImageRGB8 load_image_rgb(const std::string& path);

// How the letterboxed tensor's pixels relate to the image's, pixel centres at
// integers: tensor x = scale_x * (image x + 0.5) - 0.5 + offset_x (same for y).
struct LetterboxTransform {
  int size = 0;                      // the square tensor's side
  int content_width = 0, content_height = 0;  // the image's footprint inside it
  int offset_x = 0, offset_y = 0;    // its top-left corner (padding left / above)
  double scale_x = 1, scale_y = 1;   // content / image size (equal up to rounding)
  // Tensor pixel coordinates -> image pixel coordinates.
  double to_image_x(double tx) const { return (tx - offset_x + 0.5) / scale_x - 0.5; }
  double to_image_y(double ty) const { return (ty - offset_y + 0.5) / scale_y - 0.5; }
};

struct Letterboxed {
  Tensor tensor;  // [1,3,size,size] float32, RGB in [0,1] (minus the mean, if given); padding 0
  LetterboxTransform transform;
};

// Scales the image to fit `size` x `size` with its aspect ratio kept (the longer
// side becomes `size`, the other round(side * size / longer)), bilinear
// (sample points at pixel centres, edges clamped), centred (padding split
// floor / ceil, before / after). Values are RGB / 255; `mean` (RGB), when
// given, is subtracted from the image pixels only: the padding stays 0.
Letterboxed letterbox(const ImageRGB8& image, int size, const std::vector<float>& mean = {});

// Heatmap soft-argmax coordinates [J x 2] (heatmap pixels, centres at
// integers, heatmap side `heatmap_size`) -> pixels of the original image.
std::vector<float> heatmap_coords_to_image(const float* coords, int joints, int heatmap_size,
                                           const LetterboxTransform& t);

// One frame of MPII-16 keypoints [16 x 2] as a `dofpose lift` input file
// (layout "mpii16", image_size, every joint with confidence 1).
std::string mpii16_lift_input_json(const std::vector<float>& keypoints, int image_width,
                                   int image_height);

// The image with the MPII-16 skeleton drawn on it (lines between each joint
// and its parent, dots on the joints; right side red, left blue, centre green),
// encoded as PNG.
std::vector<unsigned char> mpii16_overlay_png(const ImageRGB8& image, const std::vector<float>& keypoints);

// Encodes an RGB image as PNG bytes (stb_image_write); throws on failure.
std::vector<unsigned char> encode_png(const ImageRGB8& image);
// The image as JPEG bytes, quality 1..100.
std::vector<unsigned char> encode_jpeg(const ImageRGB8& image, int quality = 90);

}  // namespace dofpose
