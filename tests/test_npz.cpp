// .npy/.npz reader and writers: round trips with numpy, malformed archives,
// ZIP64 records, and the real Human3.6M archive when shared/ is present.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "dofpose/error.h"
#include "dofpose/npz.h"
#include "tests/test_util.h"

using namespace dofpose;
using dofpose_test::error_of;
using dofpose_test::python_with_numpy;
using dofpose_test::require_shared;
using dofpose_test::run_python_source;
using dofpose_test::TempDir;

namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}
void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

std::string open_error(const std::string& path, const std::string& member = "") {
  return error_of([&] {
    NpzFile f(path);
    if (!member.empty()) f.array(member);
  });
}

void add16(std::vector<uint8_t>& o, uint32_t v) { o.push_back(uint8_t(v)); o.push_back(uint8_t(v >> 8)); }
void add32(std::vector<uint8_t>& o, uint32_t v) { add16(o, v & 0xFFFF); add16(o, v >> 16); }
void add64(std::vector<uint8_t>& o, uint64_t v) { add32(o, uint32_t(v)); add32(o, uint32_t(v >> 32)); }

// A ZIP64 archive of stored .npy members, with every size and offset in the
// central directory moved to ZIP64 extra fields and a ZIP64 end record, as a
// writer of >4 GiB archives produces.
std::vector<uint8_t> zip64_archive(const std::vector<std::pair<std::string, std::vector<uint8_t>>>& members) {
  std::vector<uint8_t> out, central;
  for (const auto& [name, npy] : members) {
    const uint64_t offset = out.size();
    const uint32_t crc = crc32(npy.data(), npy.size());
    add32(out, 0x04034b50); add16(out, 45); add16(out, 0); add16(out, 0); add16(out, 0); add16(out, 0x21);
    add32(out, crc); add32(out, 0xFFFFFFFF); add32(out, 0xFFFFFFFF);
    add16(out, uint32_t(name.size())); add16(out, 20);
    out.insert(out.end(), name.begin(), name.end());
    add16(out, 1); add16(out, 16); add64(out, npy.size()); add64(out, npy.size());
    out.insert(out.end(), npy.begin(), npy.end());

    add32(central, 0x02014b50); add16(central, 45); add16(central, 45); add16(central, 0); add16(central, 0);
    add16(central, 0); add16(central, 0x21);
    add32(central, crc); add32(central, 0xFFFFFFFF); add32(central, 0xFFFFFFFF);
    add16(central, uint32_t(name.size())); add16(central, 28); add16(central, 0); add16(central, 0); add16(central, 0);
    add32(central, 0); add32(central, 0xFFFFFFFF);
    central.insert(central.end(), name.begin(), name.end());
    add16(central, 1); add16(central, 24); add64(central, npy.size()); add64(central, npy.size()); add64(central, offset);
  }
  const uint64_t cd_offset = out.size();
  out.insert(out.end(), central.begin(), central.end());
  const uint64_t z64_offset = out.size();
  add32(out, 0x06064b50); add64(out, 44); add16(out, 45); add16(out, 45); add32(out, 0); add32(out, 0);
  add64(out, members.size()); add64(out, members.size()); add64(out, central.size()); add64(out, cd_offset);
  add32(out, 0x07064b50); add32(out, 0); add64(out, z64_offset); add32(out, 1);
  add32(out, 0x06054b50); add16(out, 0); add16(out, 0); add16(out, 0xFFFF); add16(out, 0xFFFF);
  add32(out, 0xFFFFFFFF); add32(out, 0xFFFFFFFF); add16(out, 0);
  return out;
}

const std::vector<float> kF32 = {1.5f, -2.25f, 3.0f, 1e-7f, -0.0f, 65504.0f};
const std::vector<int32_t> kI32 = {-7, 0, 2147483647, -2147483647 - 1};
const std::vector<uint8_t> kU8 = {0, 1, 254, 255};
const std::vector<uint8_t> kBool = {1, 0, 1};
const std::vector<double> kF64 = {0.1, -1e300};
const std::vector<int64_t> kI64 = {-5, 1LL << 40};

void write_cpp_archive(const std::string& path) {
  NpzWriter w;
  w.add_f32("poses/f32", {2, 3}, kF32.data());
  w.add_i32("i32", {4}, kI32.data());
  w.add("u8", NpyDType::U8, {2, 2}, kU8.data());
  w.add("flags", NpyDType::Bool, {3}, kBool.data());
  w.add("f64", NpyDType::F64, {2}, kF64.data());
  w.add("i64", NpyDType::I64, {2}, kI64.data());
  const float scalar = 42.0f;
  w.add_f32("scalar", {}, &scalar);
  w.add_f32("empty", {0, 3}, nullptr);
  w.write(path);
}

const char* kNumpyScript = R"PY(
import sys, numpy as np
d = sys.argv[1]
a = np.load(d + '/cpp.npz')
assert sorted(a.files) == sorted(['poses/f32', 'i32', 'u8', 'flags', 'f64', 'i64', 'scalar', 'empty']), a.files
assert a['poses/f32'].dtype == np.float32 and a['poses/f32'].shape == (2, 3)
assert a['poses/f32'].tolist() == np.array([1.5, -2.25, 3.0, 1e-7, -0.0, 65504.0], np.float32).reshape(2, 3).tolist()
assert a['i32'].dtype == np.int32 and a['i32'].tolist() == [-7, 0, 2147483647, -2147483648]
assert a['u8'].dtype == np.uint8 and a['u8'].tolist() == [[0, 1], [254, 255]]
assert a['flags'].dtype == np.bool_ and a['flags'].tolist() == [True, False, True]
assert a['f64'].dtype == np.float64 and a['f64'].tolist() == [0.1, -1e300]
assert a['i64'].dtype == np.int64 and a['i64'].tolist() == [-5, 1 << 40]
assert a['scalar'].shape == () and float(a['scalar']) == 42.0
assert a['empty'].shape == (0, 3)
assert np.load(d + '/cpp.npy').tolist() == [[1, 2], [3, 4]]
# numpy's own archive, read back by C++.
x = (np.arange(24, dtype=np.float32) * 0.5 - 3).reshape(2, 3, 4)
np.savez(d + '/py.npz', x=x, **{'nested/key': np.array([1, -2, 3], np.int32),
         'i64': np.array([[10, -20]], np.int64), 'u8': np.arange(5, dtype=np.uint8),
         'b': np.array([True, False]), 'f64': np.array([2.5, -0.125])})
np.savez(d + '/fortran.npz', f=np.asfortranarray(np.ones((3, 2), np.float32)))
np.savez(d + '/bigendian.npz', be=np.ones(3, '>f4'))
np.savez(d + '/complex.npz', c=np.ones(3, np.complex64))
np.savez_compressed(d + '/compressed.npz', z=np.zeros(100, np.float32))
# The ZIP64 archive written by the C++ test must be a valid archive for numpy too.
z = np.load(d + '/zip64.npz')
assert z['x'].tolist() == [1.0, 2.0, 3.0], z['x']
print('python ok')
)PY";

}  // namespace

TEST_CASE("npz: writer -> reader round trip (all dtypes, scalar, empty, names with '/')") {
  TempDir dir("npz");
  write_cpp_archive(dir.file("a.npz"));
  NpzFile f(dir.file("a.npz"));
  CHECK(f.names() == std::vector<std::string>{"poses/f32", "i32", "u8", "flags", "f64", "i64", "scalar", "empty"});
  const NpyArray& p = f.array("poses/f32");
  CHECK(p.dtype == NpyDType::F32);
  CHECK(p.shape == std::vector<int64_t>{2, 3});
  CHECK(p.shape_str() == "(2, 3)");
  CHECK(p.to_f32() == kF32);
  CHECK(f.array("i32").to_i32() == kI32);
  CHECK(f.array("u8").to_i32() == std::vector<int32_t>{0, 1, 254, 255});
  CHECK(f.array("flags").to_i32() == std::vector<int32_t>{1, 0, 1});
  CHECK(f.array("f64").to_f64() == kF64);
  CHECK(f.array("i64").to_f64() == std::vector<double>{-5.0, double(1LL << 40)});
  CHECK_THROWS_WITH_AS(f.array("i64").to_i32(), doctest::Contains("element 1 = 1099511627776 does not fit in int32"),
                       dofpose::Error);
  CHECK(f.array("scalar").shape.empty());
  CHECK(f.array("scalar").numel() == 1);
  CHECK(f.array("scalar").to_f32() == std::vector<float>{42.0f});
  CHECK(f.array("empty").numel() == 0);
  CHECK(f.array("empty").to_f32().empty());
  // numpy pads headers to 64 bytes and the writer's local headers keep data
  // 4-byte aligned often but not always: the copy works either way.
  p.expect_shape({2, -1});
  CHECK_THROWS_WITH_AS(p.expect_shape({3, 3}), doctest::Contains("has shape (2, 3), expected (3, 3)"), dofpose::Error);
  CHECK_THROWS_WITH_AS(f.array("f64").f32_view(), doctest::Contains("has dtype <f8, expected <f4"), dofpose::Error);
  CHECK_THROWS_WITH_AS(f.array("nope"), doctest::Contains("no array 'nope' (8 arrays: 'poses/f32', 'i32'"),
                       dofpose::Error);
  // Moving keeps the views valid.
  NpzFile moved = std::move(f);
  CHECK(moved.array("i32").to_i32() == kI32);

  // The .npy writer and parser alone.
  const std::vector<uint8_t> bytes = npy_bytes(NpyDType::I32, {4}, kI32.data());
  CHECK((bytes.size() - 16) % 64 == 0);
  const NpyArray a = parse_npy(bytes.data(), bytes.size(), "bytes", "a");
  CHECK(a.to_i32() == kI32);
  CHECK_THROWS_WITH_AS(NpzWriter().add("", NpyDType::F32, {1}, kF32.data()), doctest::Contains("empty array name"),
                       dofpose::Error);
}

TEST_CASE("npz: C++ -> numpy -> C++ round trip, numpy-written files and their errors, ZIP64") {
  if (!python_with_numpy("the numpy npz round trip")) return;
  TempDir dir("npz");
  write_cpp_archive(dir.file("cpp.npz"));
  const int32_t m[4] = {1, 2, 3, 4};
  write_npy(dir.file("cpp.npy"), NpyDType::I32, {2, 2}, m);
  const std::vector<float> x = {1, 2, 3};
  write_bytes(dir.file("zip64.npz"), zip64_archive({{"x.npy", npy_bytes(NpyDType::F32, {3}, x.data())}}));
  const std::string out = run_python_source(dir, kNumpyScript, {dir.path});
  CHECK(out.find("python ok") != std::string::npos);

  NpzFile py(dir.file("py.npz"));
  const NpyArray& a = py.array("x");
  CHECK(a.dtype == NpyDType::F32);
  CHECK(a.shape == std::vector<int64_t>{2, 3, 4});
  const std::vector<float> v = a.to_f32();
  for (int i = 0; i < 24; ++i) CHECK(v[size_t(i)] == float(i) * 0.5f - 3.0f);
  // numpy aligns the data of each member to 64 bytes within the member; the
  // view works when the member itself is aligned.
  if (reinterpret_cast<uintptr_t>(a.data) % 4 == 0) CHECK(a.f32_view()[3] == -1.5f);
  CHECK(py.array("nested/key").to_i32() == std::vector<int32_t>{1, -2, 3});
  CHECK(py.array("i64").shape == std::vector<int64_t>{1, 2});
  CHECK(py.array("i64").to_i32() == std::vector<int32_t>{10, -20});
  CHECK(py.array("u8").to_f32() == std::vector<float>{0, 1, 2, 3, 4});
  CHECK(py.array("b").to_i32() == std::vector<int32_t>{1, 0});
  CHECK(py.array("f64").to_f32() == std::vector<float>{2.5f, -0.125f});

  NpzFile z(dir.file("zip64.npz"));
  CHECK(z.array("x").to_f32() == x);

  CHECK(open_error(dir.file("fortran.npz")).find("member 'f.npy': array is stored in Fortran order") != std::string::npos);
  CHECK(open_error(dir.file("bigendian.npz")).find("unsupported dtype '>f4' (big-endian)") != std::string::npos);
  CHECK(open_error(dir.file("complex.npz")).find("unsupported dtype '<c8'") != std::string::npos);
  const std::string compressed = open_error(dir.file("compressed.npz"));
  CHECK_MESSAGE(compressed.find("compressed.npz' member 'z.npy' is deflate-compressed; save with np.savez, not "
                                "savez_compressed") != std::string::npos,
                compressed);
}

TEST_CASE("npz: malformed archives give errors naming the file and member") {
  TempDir dir("npz");
  write_cpp_archive(dir.file("good.npz"));
  const std::vector<uint8_t> good = read_bytes(dir.file("good.npz"));

  CHECK(open_error(dir.file("missing.npz")).find("missing.npz': cannot open") != std::string::npos);
  write_bytes(dir.file("empty.npz"), {});
  CHECK(open_error(dir.file("empty.npz")).find("too small for a ZIP archive") != std::string::npos);
  std::vector<uint8_t> text(200, 'x');
  write_bytes(dir.file("text.npz"), text);
  CHECK(open_error(dir.file("text.npz")).find("bad magic, not a ZIP/.npz archive") != std::string::npos);

  // Cut in half: the end records are gone.
  write_bytes(dir.file("half.npz"), std::vector<uint8_t>(good.begin(), good.begin() + long(good.size() / 2)));
  CHECK(open_error(dir.file("half.npz")).find("truncated ZIP archive") != std::string::npos);

  // Central directory claims more data than the file has: drop bytes from the
  // front of the data while keeping the end records (offsets now point past them).
  {
    std::vector<uint8_t> cut(good.begin() + 100, good.end());
    write_bytes(dir.file("shifted.npz"), cut);
    const std::string e = open_error(dir.file("shifted.npz"));
    CHECK_MESSAGE((e.find("truncated") != std::string::npos || e.find("corrupt") != std::string::npos ||
                   e.find("bad local header") != std::string::npos),
                  e);
  }

  // A corrupted data byte: the CRC check names the member.
  {
    std::vector<uint8_t> bad = good;
    // The first float of 'poses/f32' is 1.5f = 00 00 c0 3f; find and change it.
    const uint8_t pattern[4] = {0x00, 0x00, 0xc0, 0x3f};
    size_t at = 0;
    for (size_t i = 0; i + 4 <= bad.size(); ++i)
      if (std::memcmp(&bad[i], pattern, 4) == 0) { at = i; break; }
    REQUIRE(at > 0);
    bad[at + 3] = 0x40;
    write_bytes(dir.file("crc.npz"), bad);
    NpzFile f(dir.file("crc.npz"));
    CHECK(f.array("i32").to_i32() == kI32);  // other members are fine
    CHECK_THROWS_WITH_AS(f.array("poses/f32"), doctest::Contains("member 'poses/f32.npy': CRC-32 mismatch"), dofpose::Error);
  }

  // Member-level .npy problems.
  auto archive_with = [&](const std::string& name, std::vector<uint8_t> npy) {
    const std::string path = dir.file(name);
    write_bytes(path, zip64_archive({{"m.npy", std::move(npy)}}));
    return open_error(path);
  };
  const std::vector<uint8_t> npy = npy_bytes(NpyDType::F32, {3}, kF32.data());
  {
    std::vector<uint8_t> b = npy;
    b[1] = 'X';
    CHECK(archive_with("magic.npz", b).find("member 'm.npy': bad magic, not an .npy array") != std::string::npos);
  }
  {
    std::vector<uint8_t> b(npy.begin(), npy.end() - 4);
    CHECK(archive_with("short.npz", b).find("member 'm.npy': truncated data: shape (3,) <f4 needs 12 bytes, found 8") !=
          std::string::npos);
  }
  {
    std::vector<uint8_t> b = npy;
    b.push_back(0);
    CHECK(archive_with("long.npz", b).find("1 unexpected bytes after the data") != std::string::npos);
  }
  {
    std::vector<uint8_t> b = npy;
    const std::string h(b.begin() + 10, b.begin() + 10 + 20);
    b[10 + h.find("descr")] = 'X';
    CHECK(archive_with("key.npz", b).find("malformed .npy header (unexpected key 'Xescr'") != std::string::npos);
  }
  {
    std::vector<uint8_t> b = npy;
    b[6] = 9;
    CHECK(archive_with("version.npz", b).find("unsupported .npy format version 9") != std::string::npos);
  }
  {
    std::vector<uint8_t> b(npy.begin(), npy.begin() + 30);
    CHECK(archive_with("header.npz", b).find("truncated .npy header") != std::string::npos);
  }
  CHECK(archive_with("ok.npz", npy) == "(no error)");
}

TEST_CASE("npz: the Human3.6M archive S9.npz (keys, shapes, dtypes)") {
  const std::string path = require_shared("data/h36m/S9.npz");
  if (path.empty()) return;
  NpzFile f(path);
  const std::vector<std::string> names = f.names();
  CHECK(names.size() == 174);  // 29 sequences x (pos3d, frames, 4 cameras)
  CHECK(f.has("Directions 1/pos3d"));
  CHECK_FALSE(f.has("Discussion 1/pos3d"));  // missing from the source
  const NpyArray& pos = f.array("Walking/pos3d");
  CHECK(pos.dtype == NpyDType::F32);
  REQUIRE(pos.shape.size() == 3);
  const int64_t n = pos.shape[0];
  CHECK(n > 100);
  pos.expect_shape({n, 17, 3});
  const NpyArray& frames = f.array("Walking/frames");
  CHECK(frames.dtype == NpyDType::I32);
  frames.expect_shape({n});
  const std::vector<int32_t> fr = frames.to_i32();
  for (size_t i = 1; i < fr.size(); ++i) CHECK(fr[i] - fr[i - 1] == 5);
  for (const char* cam : {"54138969", "55011271", "58860488", "60457274"}) {
    const NpyArray& sh = f.array(std::string("Walking/sh2d/") + cam);
    CHECK(sh.dtype == NpyDType::F32);
    sh.expect_shape({n, 16, 2});
  }
  // World coordinates in millimetres: a standing person's pelvis is ~1 m up.
  const std::vector<float> p = pos.to_f32();
  double max_abs = 0;
  for (float v : p) max_abs = std::max(max_abs, double(std::fabs(v)));
  CHECK(max_abs > 500);
  CHECK(max_abs < 10000);
}
