// Weights files: f16/bf16 conversions, C++ round trips, the C++ -> Python ->
// C++ round trip (tests/weights_roundtrip.py), rejection of every kind of bad
// file with a message naming the problem, and atomic writes.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "dofpose/weights.h"
#include "tests/test_util.h"

using namespace dofpose;
namespace fs = std::filesystem;
using dofpose_test::contains;
using dofpose_test::error_of;
using dofpose_test::kNoError;
using dofpose_test::python_with_numpy;
using dofpose_test::run_python;
using dofpose_test::TempDir;

namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

// 8-byte little-endian length + header + data, with no validation at all.
std::string make_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char(uint8_t(n >> (8 * i)));
  return out + header + data;
}

// Opens a file made of `header` and `data` and returns the error message.
std::string open_error(const TempDir& dir, const std::string& header, const std::string& data,
                       WeightsLoadOptions opt = {}) {
  const std::string path = dir.file("bad.safetensors");
  write_bytes(path, make_file(header, data));
  return error_of([&] { WeightsFile w(path, opt); });
}

std::string floats_bytes(std::vector<float> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---- value formulas shared with tests/weights_roundtrip.py
std::vector<float> float_values(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = float((i * 37) % 101 - 50) * 0.125f;
  return v;
}
std::vector<int32_t> i32_values(int64_t n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = int32_t((i * 7919) % 100003 - 50000);
  return v;
}
std::vector<uint8_t> u8_values(int64_t n) {
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = uint8_t((i * 13) % 256);
  return v;
}

struct RoundTripTensor {
  const char* name;
  DType dtype;
  Shape shape;
};
// Mirrors EXPECTED in tests/weights_roundtrip.py.
const RoundTripTensor kRoundTrip[] = {
    {"f32.5d", DType::F32, Shape{2, 1, 3, 2, 2}}, {"f32.scalar", DType::F32, Shape{}},
    {"f32.empty", DType::F32, Shape{0, 3}},       {"f16.w", DType::F16, Shape{3, 5}},
    {"bf16.w", DType::BF16, Shape{4, 3}},         {"i32.idx", DType::I32, Shape{7}},
    {"u8.mask", DType::U8, Shape{5}},
};
const char* const kUnicode = "\xc3\xbcn\xc3\xaf\xe2\x82\xac" "ode \xe2\x9c\x93";  // "ünï€ode ✓"
const char* const kConfig = "{\"layers\":[1,2],\"name\":\"\xc3\xbcn\xc3\xaf\xe2\x82\xac" "ode\"}";

void write_round_trip_file(const std::string& path) {
  WeightsWriter w;
  // Added in an order unlike the file order, so the writer's sorting is exercised.
  for (const RoundTripTensor& t : kRoundTrip) {
    const int64_t n = t.shape.numel();
    if (t.dtype == DType::I32) {
      w.add_raw(t.name, t.dtype, t.shape, i32_values(n).data());
    } else if (t.dtype == DType::U8) {
      std::vector<uint8_t> v = u8_values(n);
      w.add(t.name, TensorView(v.data(), t.shape, DType::U8), DType::U8);
    } else {
      std::vector<float> v = float_values(n);
      w.add(t.name, TensorView(v.data(), t.shape), t.dtype);  // F32 -> F16/BF16 on store
    }
  }
  w.set_metadata("format_version", "1");
  w.set_metadata("kind", "roundtrip-test");
  w.set_metadata("config", kConfig);
  w.set_metadata("unicode", kUnicode);
  w.write(path);
}

// Checks a file written by write_round_trip_file (scale 1) or by Python (scale 2 etc.).
void check_round_trip_file(const WeightsFile& f, float float_scale, int32_t int_add, bool u8_flip) {
  for (const RoundTripTensor& t : kRoundTrip) {
    CAPTURE(t.name);
    const WeightsEntry& e = f.entry(t.name);
    CHECK(e.dtype == t.dtype);
    CHECK(e.shape == t.shape);
    const int64_t n = t.shape.numel();
    if (t.dtype == DType::I32) {
      TensorView v = f.raw(t.name);
      std::vector<int32_t> want = i32_values(n);
      for (int64_t i = 0; i < n; ++i) CHECK(v.i32()[i] == want[size_t(i)] + int_add);
    } else if (t.dtype == DType::U8) {
      TensorView v = f.raw(t.name);
      std::vector<uint8_t> want = u8_values(n);
      for (int64_t i = 0; i < n; ++i)
        CHECK(v.u8()[i] == (u8_flip ? uint8_t(255 - want[size_t(i)]) : want[size_t(i)]));
    } else {
      Tensor v = f.load_f32(t.name, t.shape);
      std::vector<float> want = float_values(n);
      for (int64_t i = 0; i < n; ++i) CHECK(v.f32()[i] == want[size_t(i)] * float_scale);
    }
  }
  CHECK(f.metadata_or("format_version", "") == "1");
  CHECK(f.metadata_or("kind", "") == "roundtrip-test");
  CHECK(f.metadata_or("config", "") == kConfig);
  CHECK(f.metadata_or("unicode", "") == kUnicode);
  CHECK(f.metadata_or("absent", "fallback") == "fallback");
}

}  // namespace

// ========================================================= dtype conversions

TEST_CASE("weights: f16 <-> f32 conversions are exact and round to nearest even") {
  // Every half converts to a float that converts back to the same bits (NaNs to a NaN).
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const float f = f16_to_f32(uint16_t(h));
    const bool is_nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
    if (is_nan) {
      CHECK(std::isnan(f));
      CHECK((f32_to_f16(f) & 0x7C00) == 0x7C00);
      CHECK((f32_to_f16(f) & 0x3FF) != 0);
    } else if (f32_to_f16(f) != h) {
      FAIL("half ", h, " -> ", f, " -> ", f32_to_f16(f));
    }
  }
  CHECK(f16_to_f32(0x3C00) == 1.0f);
  CHECK(f16_to_f32(0x7BFF) == 65504.0f);
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(f16_to_f32(0x0400) == std::ldexp(1.0f, -14));  // smallest normal
  CHECK(std::signbit(f16_to_f32(0x8000)));
  CHECK(std::isinf(f16_to_f32(0xFC00)));
  CHECK(f16_to_f32(0xFC00) < 0);

  CHECK(f32_to_f16(65504.0f) == 0x7BFF);
  CHECK(f32_to_f16(65519.99f) == 0x7BFF);
  CHECK(f32_to_f16(65520.0f) == 0x7C00);  // the tie rounds to even: infinity
  CHECK(f32_to_f16(1e10f) == 0x7C00);
  CHECK(f32_to_f16(-INFINITY) == 0xFC00);
  CHECK(f32_to_f16(-0.0f) == 0x8000);
  CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);  // tie between 0 and 2^-24: even 0
  CHECK(f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);
  CHECK(f32_to_f16(std::ldexp(3.0f, -25)) == 0x0002);  // 1.5 units: tie to even 2
  CHECK(f32_to_f16(std::ldexp(5.0f, -25)) == 0x0002);  // 2.5 units: tie to even 2
  CHECK(f32_to_f16(std::ldexp(1023.5f, -24)) == 0x0400);  // rounds up into the normals
  CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);            // tie, even stays
  CHECK(f32_to_f16(1.0f + std::ldexp(3.0f, -11)) == 0x3C02);            // tie, odd rounds up
  CHECK(f32_to_f16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)) == 0x3C01);
  CHECK(f32_to_f16(float_of(0x00000001)) == 0x0000);  // float subnormal
  CHECK(f32_to_f16(float_of(0xFFC00000)) == 0xFE00);  // quiet NaN keeps its sign

#ifdef __FLT16_MAX__
  // The compiler's own float -> _Float16 conversion (IEEE, round to nearest
  // even) as an independent reference on random bit patterns.
  std::mt19937 rng(1234);
  for (int i = 0; i < 200000; ++i) {
    const float f = float_of(rng());
    if (std::isnan(f)) continue;
    _Float16 ref = static_cast<_Float16>(f);
    uint16_t ref_bits;
    std::memcpy(&ref_bits, &ref, 2);
    if (f32_to_f16(f) != ref_bits) FAIL("f32_to_f16(", f, ") = ", f32_to_f16(f), ", expected ", ref_bits);
  }
#endif
}

TEST_CASE("weights: bf16 <-> f32 conversions round to nearest even") {
  CHECK(bf16_to_f32(0x3F80) == 1.0f);
  CHECK(f32_to_bf16(1.0f) == 0x3F80);
  CHECK(f32_to_bf16(float_of(0x3F808000)) == 0x3F80);  // tie, even stays
  CHECK(f32_to_bf16(float_of(0x3F818000)) == 0x3F82);  // tie, odd rounds up
  CHECK(f32_to_bf16(float_of(0x3F808001)) == 0x3F81);  // above the tie
  CHECK(f32_to_bf16(float_of(0x7F7FFFFF)) == 0x7F80);  // FLT_MAX rounds to infinity
  CHECK(f32_to_bf16(-INFINITY) == 0xFF80);
  CHECK(f32_to_bf16(float_of(0x00010000)) == 0x0001);  // subnormals keep their bits
  CHECK(bf16_to_f32(0x0001) == float_of(0x00010000));
  const uint16_t nan = f32_to_bf16(float_of(0x7F800001));  // signalling NaN, low payload only
  CHECK((nan & 0x7F80) == 0x7F80);
  CHECK((nan & 0x7F) != 0);  // still a NaN, not infinity
  CHECK(std::isnan(bf16_to_f32(nan)));
  CHECK(f32_to_bf16(float_of(0xFFC00000)) == 0xFFC0);
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const float f = bf16_to_f32(uint16_t(h));
    if (!std::isnan(f) && f32_to_bf16(f) != h) FAIL("bf16 ", h, " does not round trip");
  }
}

// ============================================================ C++ round trip

TEST_CASE("weights: C++ write -> read round trip of every dtype with 0-d 5-d and empty tensors") {
  TempDir dir("weights");
  const std::string path = dir.file("rt.safetensors");
  write_round_trip_file(path);
  CHECK(dir.listing() == std::vector<std::string>{"rt.safetensors"});  // no temporary left

  WeightsFile f(path);
  CHECK(f.path() == path);
  check_round_trip_file(f, 1.0f, 0, false);
  CHECK(f.metadata().size() == 4);
  CHECK(f.has("f16.w"));
  CHECK(!f.has("f16"));
  CHECK(f.entry("f32.scalar").shape.ndim == 0);
  CHECK(f.load_f32("f32.scalar").numel() == 1);
  CHECK(f.load_f32("f32.empty").numel() == 0);
  CHECK(f.raw("f32.empty").numel() == 0);

  // F16/BF16 stored values are the rounded ones, read back as stored bits.
  Tensor stored = f.load_copy("bf16.w");
  CHECK(stored.dtype() == DType::BF16);
  std::vector<float> want = float_values(12);
  for (int i = 0; i < 12; ++i) {
    uint16_t b;
    std::memcpy(&b, static_cast<const uint8_t*>(stored.view().data) + 2 * i, 2);
    CHECK(b == f32_to_bf16(want[size_t(i)]));
  }

  // Layout: a file any safetensors reader accepts, aligned as documented.
  const std::string bytes = read_bytes(path);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | uint8_t(bytes[size_t(i)]);
  CHECK((8 + header_len) % 64 == 0);
  CHECK(bytes[8] == '{');
  uint64_t covered = 0, previous_size = 8;
  std::vector<std::string> names = f.names();
  for (size_t i = 0; i < names.size(); ++i) {
    const WeightsEntry& e = f.entry(names[i]);
    CAPTURE(e.name);
    CHECK(e.begin == covered);  // back to back: no gaps (the reference reader requires it)
    covered = e.end;
    CHECK((8 + header_len + e.begin) % dtype_size(e.dtype) == 0);
    CHECK(dtype_size(e.dtype) <= previous_size);  // largest element size first
    previous_size = dtype_size(e.dtype);
    CHECK(reinterpret_cast<uintptr_t>(f.raw(e.name).data) % dtype_size(e.dtype) == 0);
  }
  CHECK(covered == bytes.size() - 8 - header_len);  // and no trailing bytes
  CHECK(f.entries().size() == names.size());

  // Deterministic: the same content added in another order gives the same bytes.
  WeightsWriter w2;
  std::vector<uint8_t> u8 = u8_values(5);
  w2.add_raw("u8.mask", DType::U8, Shape{5}, u8.data());
  for (auto it = std::rbegin(kRoundTrip); it != std::rend(kRoundTrip); ++it) {
    if (it->dtype == DType::U8) continue;
    if (it->dtype == DType::I32) {
      w2.add_raw(it->name, DType::I32, it->shape, i32_values(it->shape.numel()).data());
    } else {
      std::vector<float> v = float_values(it->shape.numel());
      w2.add(it->name, TensorView(v.data(), it->shape), it->dtype);
    }
  }
  w2.set_metadata("unicode", kUnicode);
  w2.set_metadata("config", kConfig);
  w2.set_metadata("kind", "roundtrip-test");
  w2.set_metadata("format_version", "1");
  w2.write(dir.file("rt2.safetensors"));
  CHECK(read_bytes(dir.file("rt2.safetensors")) == bytes);

  // Moving keeps the mapping valid.
  WeightsFile moved = std::move(f);
  CHECK(moved.load_f32("f32.5d", Shape{2, 1, 3, 2, 2}).f32()[1] == float_values(2)[1]);
  WeightsFile assigned;
  assigned = std::move(moved);
  CHECK(assigned.raw("i32.idx").i32()[3] == i32_values(4)[3]);

  // load_into a caller-provided buffer.
  std::vector<float> buffer(15, -1.0f);
  assigned.load_into("f16.w", TensorView(buffer.data(), Shape{3, 5}));
  CHECK(buffer[14] == float_values(15)[14]);
}

TEST_CASE("weights: a file with no tensors and no metadata") {
  TempDir dir("weights");
  WeightsWriter().write(dir.file("empty.safetensors"));
  WeightsFile f(dir.file("empty.safetensors"));
  CHECK(f.names().empty());
  CHECK(f.metadata().empty());
  CHECK(read_bytes(dir.file("empty.safetensors")).size() == 64);
}

// ============================================= C++ -> Python -> C++ round trip

TEST_CASE("weights: C++ -> Python (numpy) -> C++ round trip and reference-layout files") {
  if (!python_with_numpy("the cross-language weights test")) return;
  TempDir dir("weights");
  write_round_trip_file(dir.file("cpp.safetensors"));
  run_python(std::string(DOFPOSE_SOURCE_DIR) + "/tests/weights_roundtrip.py", {dir.path});

  // Python's transformed file.
  WeightsFile py(dir.file("py.safetensors"));
  check_round_trip_file(py, 2.0f, 1, true);
  CHECK(py.metadata_or("written_by", "") == "python");
  Tensor extra = py.load_f32("py.extra", Shape{2, 2});
  CHECK(extra.f32()[0] == 1.5f);
  CHECK(extra.f32()[3] == 4.0f);

  // The same layout rules in both languages: identical bytes.
  CHECK(read_bytes(dir.file("py_same.safetensors")) == read_bytes(dir.file("cpp.safetensors")));

  // Laid out exactly as the safetensors library does (8-byte padding only).
  WeightsFile ref(dir.file("reference.safetensors"));
  CHECK(ref.metadata_or("kind", "") == "reference");
  std::vector<std::string> order = ref.names();
  CHECK(order == std::vector<std::string>{"ref.f32", "ref.i32", "ref.bf16", "ref.f16", "ref.u8"});
  Tensor r32 = ref.load_f32("ref.f32", Shape{2, 3});
  for (int i = 0; i < 6; ++i) CHECK(r32.f32()[i] == float(i) * 0.5f - 1.0f);
  CHECK(ref.raw("ref.i32").i32()[0] == -7);
  CHECK(ref.raw("ref.i32").i32()[2] == 2147483647);
  Tensor rb = ref.load_f32("ref.bf16");
  CHECK(rb.f32()[0] == 1.0f);
  CHECK(rb.f32()[1] == -2.5f);
  CHECK(rb.f32()[2] == 0.375f);
  Tensor rh = ref.load_f32("ref.f16");
  CHECK(rh.f32()[0] == 65504.0f);
  CHECK(rh.f32()[1] == -0.0009765625f);
  CHECK(ref.raw("ref.u8").u8()[1] == 128);

  // No padding at all, F32 data misaligned in the file: copies work, raw views refuse.
  WeightsFile odd(dir.file("unpadded.safetensors"));
  Tensor o32 = odd.load_f32("odd.f32", Shape{2});
  CHECK(o32.f32()[0] == 0.25f);
  CHECK(o32.f32()[1] == -8.0f);
  Tensor o16 = odd.load_f32("odd.f16", Shape{3});
  CHECK(o16.f32()[2] == -3.0f);
  CHECK(odd.raw("odd.u8").u8()[2] == 3);
  const std::string msg = error_of([&] { odd.raw("odd.f32"); });
  CHECK(contains(msg, "'odd.f32'"));
  CHECK(contains(msg, "not aligned to 4 bytes"));
  Tensor copy32 = odd.load_copy("odd.f32");
  CHECK(copy32.f32()[1] == -8.0f);
}

// ================================================================ rejections

TEST_CASE("weights: truncated files and bad header lengths are rejected") {
  TempDir dir("weights");
  const std::string good_path = dir.file("good.safetensors");
  write_round_trip_file(good_path);
  const std::string good = read_bytes(good_path);
  const std::string path = dir.file("cut.safetensors");

  write_bytes(path, good.substr(0, 5));
  std::string msg = error_of([&] { WeightsFile f(path); });
  CHECK(contains(msg, path));
  CHECK(contains(msg, "5 bytes, expected at least 8"));

  write_bytes(path, good.substr(0, 8 + 20));  // cut inside the header
  msg = error_of([&] { WeightsFile f(path); });
  CHECK(contains(msg, path));
  CHECK(contains(msg, "header length"));
  CHECK(contains(msg, "exceeds the file"));

  write_bytes(path, good.substr(0, good.size() - 3));  // cut inside the data section
  msg = error_of([&] { WeightsFile f(path); });
  CHECK(contains(msg, path));
  CHECK(contains(msg, "tensor 'u8.mask'"));  // the last tensor in the file
  CHECK(contains(msg, "end past the data section"));

  std::string huge = good;
  huge[6] = 1;  // header length 2^48 + ...
  write_bytes(path, huge);
  msg = error_of([&] { WeightsFile f(path); });
  CHECK(contains(msg, "exceeds the limit of 100000000 bytes"));

  std::string longer = good;
  uint64_t n = good.size() - 8 + 1;
  for (int i = 0; i < 8; ++i) longer[size_t(i)] = char(uint8_t(n >> (8 * i)));
  write_bytes(path, longer);
  msg = error_of([&] { WeightsFile f(path); });
  CHECK(contains(msg, "header length " + std::to_string(n) + " exceeds the file"));

  msg = error_of([&] { WeightsFile f(dir.file("missing.safetensors")); });
  CHECK(contains(msg, dir.file("missing.safetensors")));
  CHECK(contains(msg, "cannot open"));
  msg = error_of([&] { WeightsFile f(dir.path); });
  CHECK(contains(msg, "not a regular file"));
}

TEST_CASE("weights: bad offsets or shapes or dtypes are rejected naming the tensor") {
  TempDir dir("weights");
  const std::string data = floats_bytes({1, 2, 3, 4, 5, 6});  // 24 bytes
  std::string msg;

  msg = open_error(dir,
                   R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                   data);
  CHECK(contains(msg, dir.file("bad.safetensors")));
  CHECK(contains(msg, "tensor 'b' data_offsets [8,16] overlap tensor 'a' [0,16]"));

  msg = open_error(dir, R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", data);
  CHECK(contains(msg, "tensor 'a'"));
  CHECK(contains(msg, "[0,32] end past the data section of 24 bytes"));

  msg = open_error(dir, R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[16,8]}})", data);
  CHECK(contains(msg, "tensor 'a'"));
  CHECK(contains(msg, "begin is after end"));

  msg = open_error(dir, R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", data);
  CHECK(contains(msg, "tensor 'w'"));
  CHECK(contains(msg, "hold 12 bytes, expected 16 for F32[2,2]"));

  msg = open_error(dir, R"({"w":{"dtype":"F64","shape":[3],"data_offsets":[0,24]}})", data);
  CHECK(contains(msg, "tensor 'w'"));
  CHECK(contains(msg, "unsupported dtype F64"));
  msg = open_error(dir, R"({"w":{"dtype":"I64","shape":[3],"data_offsets":[0,24]}})", data);
  CHECK(contains(msg, "unsupported dtype I64"));
  msg = open_error(dir, R"({"w":{"dtype":"Q7","shape":[3],"data_offsets":[0,24]}})", data);
  CHECK(contains(msg, "tensor 'w'"));
  CHECK(contains(msg, "unknown dtype 'Q7'"));
  msg = open_error(dir, R"({"w":{"dtype":4,"shape":[3],"data_offsets":[0,12]}})", data);
  CHECK(contains(msg, "dtype must be a string"));

  msg = open_error(dir, R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", data);
  CHECK(contains(msg, "tensor 'w'"));
  CHECK(contains(msg, "non-negative integers, found -1"));
  msg = open_error(dir, R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", data);
  CHECK(contains(msg, "non-negative integers, found 1.5"));
  msg = open_error(dir, R"({"w":{"dtype":"F32","shape":[1,1,1,1,1,1],"data_offsets":[0,4]}})", data);
  CHECK(contains(msg, "6 dims, at most 5"));
  msg = open_error(dir,
                   R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})",
                   data);
  CHECK(contains(msg, "too large"));
  msg = open_error(dir, R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", data);
  CHECK(contains(msg, "data_offsets must be [begin, end]"));
  msg = open_error(dir, R"({"w":{"dtype":"F32","shape":[1]}})", data);
  CHECK(contains(msg, "tensor 'w': missing field 'data_offsets'"));
  msg = open_error(dir, R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", data);
  CHECK(contains(msg, "unexpected field 'x'"));
  msg = open_error(dir, R"({"w":[1,2]})", data);
  CHECK(contains(msg, "tensor 'w': expected an object"));
  msg = open_error(dir, R"({"__metadata__":{"k":1}})", data);
  CHECK(contains(msg, "metadata 'k' must be a string, found number"));
  msg = open_error(dir, R"({"__metadata__":[]})", data);
  CHECK(contains(msg, "__metadata__"));

  // Zero-length tensors sit anywhere without overlapping; gaps are allowed.
  const std::string path = dir.file("ok.safetensors");
  write_bytes(path, make_file(R"({"e":{"dtype":"F32","shape":[0,7],"data_offsets":[4,4]},)"
                              R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]},)"
                              R"("__metadata__":null})",
                              data));
  WeightsFile ok(path);
  CHECK(ok.names() == std::vector<std::string>{"a", "e", "b"});
  CHECK(ok.load_f32("b", Shape{2}).f32()[1] == 5.0f);
}

TEST_CASE("weights: headers that are not UTF-8 or not JSON or not an object are rejected") {
  TempDir dir("weights");
  std::string msg = open_error(
      dir, "{\"w\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", floats_bytes({1}));
  CHECK(contains(msg, dir.file("bad.safetensors")));
  CHECK(contains(msg, "not valid UTF-8 (byte 3"));
  msg = open_error(dir, "{\"\xc0\xaf\":1}", "");  // overlong encoding of '/'
  CHECK(contains(msg, "not valid UTF-8"));
  msg = open_error(dir, "{\"\xed\xa0\x80\":1}", "");  // a UTF-16 surrogate
  CHECK(contains(msg, "not valid UTF-8"));

  msg = open_error(dir, R"({"w":{"dtype":"F32","shape":[1,2}})", "");
  CHECK(contains(msg, "header is not valid JSON"));
  msg = open_error(dir, "", "");
  CHECK(contains(msg, "header is not valid JSON"));
  msg = open_error(dir, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} trailing)",
                   floats_bytes({1}));
  CHECK(contains(msg, "header is not valid JSON"));
  msg = open_error(dir, "[1,2]", "");
  CHECK(contains(msg, "expected a JSON object, found array"));
  msg = open_error(dir,
                   R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                   R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                   floats_bytes({1, 2}));
  CHECK(contains(msg, "key 'a' appears twice"));
  msg = open_error(dir, R"({"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", floats_bytes({1}));
  CHECK(contains(msg, "empty name"));
}

TEST_CASE("weights: lookups of missing tensors and wrong shapes or dtypes fail clearly") {
  TempDir dir("weights");
  const std::string path = dir.file("conv.safetensors");
  WeightsWriter w;
  std::vector<float> v(64 * 3 * 7 * 7, 0.5f);
  w.add("conv1.weight", TensorView(v.data(), Shape{64, 3, 7, 7}));
  std::vector<int32_t> idx = {1, 2};
  w.add("idx", TensorView(idx.data(), Shape{2}, DType::I32), DType::I32);
  w.write(path);
  WeightsFile f(path);

  std::string msg = error_of([&] { f.entry("conv2.weight"); });
  CHECK(contains(msg, "file " + path + ": no tensor named 'conv2.weight'"));
  CHECK(contains(msg, "'conv1.weight'"));  // lists what the file has
  CHECK(contains(error_of([&] { f.raw("nope"); }), "no tensor named 'nope'"));
  CHECK(contains(error_of([&] { f.load_f32("nope"); }), "no tensor named 'nope'"));

  msg = error_of([&] { f.load_f32("conv1.weight", Shape{64, 3, 7, 8}); });
  CHECK(msg == "file " + path + ": tensor 'conv1.weight' has shape [64,3,7,7], expected [64,3,7,8]");
  std::vector<float> small(4);
  msg = error_of([&] { f.load_into("conv1.weight", TensorView(small.data(), Shape{2, 2})); });
  CHECK(contains(msg, "has shape [64,3,7,7], expected [2,2]"));

  msg = error_of([&] { f.load_f32("idx"); });
  CHECK(contains(msg, "tensor 'idx' has dtype I32, expected a floating-point dtype"));
  CHECK(f.load_f32("conv1.weight", Shape{64, 3, 7, 7}).f32()[100] == 0.5f);
}

TEST_CASE("weights: check_finite rejects NaN/Inf naming the tensor and index") {
  TempDir dir("weights");
  const std::string path = dir.file("nan.safetensors");
  WeightsWriter w;
  std::vector<float> good = {1, 2, 3, 4, 5, 6};
  std::vector<float> bad = {1, 2, 3, 4, 5, 6};
  bad[4] = std::numeric_limits<float>::quiet_NaN();
  w.add("ok", TensorView(good.data(), Shape{6}));
  w.add("layer.bias", TensorView(bad.data(), Shape{2, 3}));
  w.write(path);

  WeightsFile lenient(path);  // off by default
  CHECK(std::isnan(lenient.load_f32("layer.bias").f32()[4]));
  const std::string msg = error_of([&] { WeightsFile f(path, WeightsLoadOptions{true}); });
  CHECK(contains(msg, path));
  CHECK(contains(msg, "tensor 'layer.bias'"));
  CHECK(contains(msg, "flat index 4 [1,1]"));

  // Infinity in F16 and BF16 storage too.
  for (DType t : {DType::F16, DType::BF16}) {
    CAPTURE(dtype_name(t));
    WeightsWriter wh;
    std::vector<float> inf = {0, 1, -INFINITY};
    wh.add("h", TensorView(inf.data(), Shape{3}), t);
    wh.add("fine", TensorView(good.data(), Shape{6}), t);
    wh.write(path);
    const std::string m = error_of([&] { WeightsFile f(path, WeightsLoadOptions{true}); });
    CHECK(contains(m, "tensor 'h' has a non-finite value (-inf) at flat index 2"));
    CHECK(error_of([&] { WeightsFile f(path); }) == kNoError);
  }
  WeightsWriter fine;
  fine.add("ok", TensorView(good.data(), Shape{6}));
  fine.write(path);
  CHECK(error_of([&] { WeightsFile f(path, WeightsLoadOptions{true}); }) == kNoError);
}

// ================================================================== writing

TEST_CASE("weights: writer rejects bad input before touching the disk") {
  WeightsWriter w;
  std::vector<float> v(4, 1.0f);
  w.add("a", TensorView(v.data(), Shape{4}));
  CHECK(contains(error_of([&] { w.add("a", TensorView(v.data(), Shape{4})); }), "'a': added twice"));
  CHECK(contains(error_of([&] { w.add("", TensorView(v.data(), Shape{4})); }), "must not be empty"));
  CHECK(contains(error_of([&] { w.add("__metadata__", TensorView(v.data(), Shape{4})); }), "reserved"));
  CHECK(contains(error_of([&] { w.add("x\xff", TensorView(v.data(), Shape{4})); }), "not valid UTF-8"));
  CHECK(contains(error_of([&] { w.add("i", TensorView(v.data(), Shape{4}), DType::I32); }),
                 "cannot store a F32 tensor as I32"));
  std::vector<int32_t> iv(4, 1);
  CHECK(contains(error_of([&] { w.add("i", TensorView(iv.data(), Shape{4}, DType::I32)); }),
                 "cannot store a I32 tensor as F32"));
  TensorView strided(v.data(), Shape{2, 2});
  strided.strides[0] = 1;
  strided.strides[1] = 2;
  CHECK(contains(error_of([&] { w.add("t", strided); }), "not contiguous"));
  CHECK(contains(error_of([&] { w.set_metadata("k", "\xc3"); }), "metadata 'k': value is not valid UTF-8"));
}

TEST_CASE("weights: a failing write leaves no file and no temporary behind") {
  TempDir dir("weights");
  std::vector<float> v(16, 2.0f);
  WeightsWriter w;
  w.add("w", TensorView(v.data(), Shape{16}));

  // Into a directory that does not exist.
  const std::string missing = dir.file("no/such/dir/w.safetensors");
  std::string msg = error_of([&] { w.write(missing); });
  CHECK(contains(msg, missing));
  CHECK(contains(msg, "cannot create temporary file"));
  CHECK(dir.listing().empty());

  // Over a directory: the final rename fails after the data was written.
  fs::create_directory(dir.file("occupied"));
  msg = error_of([&] { w.write(dir.file("occupied")); });
  CHECK(contains(msg, "cannot rename the temporary over it"));
  CHECK(dir.listing() == std::vector<std::string>{"occupied"});
}

TEST_CASE("weights: an error midway through writing keeps the old file intact") {
  TempDir dir("weights");
  const std::string path = dir.file("model.safetensors");
  write_round_trip_file(path);
  const std::string before = read_bytes(path);

  // 1 MiB of data against a 64 KiB file size limit: write(2) fails with EFBIG
  // partway through the data (SIGXFSZ ignored so it is an error, not a kill).
  std::vector<float> big(256 * 1024, 3.0f);
  WeightsWriter w;
  w.add("big", TensorView(big.data(), Shape{int64_t(big.size())}));
  struct rlimit old_limit;
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 64 * 1024;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  const std::string msg = error_of([&] { w.write(path); });
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);

  CHECK(contains(msg, path));
  CHECK(contains(msg, "cannot write tensor data"));
  CHECK(contains(msg, "removed"));
  CHECK(read_bytes(path) == before);
  CHECK(dir.listing() == std::vector<std::string>{"model.safetensors"});
  WeightsFile f(path);
  check_round_trip_file(f, 1.0f, 0, false);

  // And with the limit lifted the same writer replaces the file.
  w.write(path);
  WeightsFile replaced(path);
  CHECK(replaced.names() == std::vector<std::string>{"big"});
  CHECK(dir.listing() == std::vector<std::string>{"model.safetensors"});
}
