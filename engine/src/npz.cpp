#include "dofpose/npz.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>

#include "dofpose/error.h"

namespace dofpose {

// ================================================================== helpers

namespace {

uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t* p) { return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24); }
uint64_t rd64(const uint8_t* p) { return uint64_t(rd32(p)) | (uint64_t(rd32(p + 4)) << 32); }

void wr16(std::vector<uint8_t>& o, uint32_t v) { o.push_back(uint8_t(v)); o.push_back(uint8_t(v >> 8)); }
void wr32(std::vector<uint8_t>& o, uint32_t v) { wr16(o, v & 0xFFFF); wr16(o, v >> 16); }

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEocdSig = 0x06054b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50, kZip64LocatorSig = 0x07064b50;

bool parse_descr(const std::string& s, NpyDType* t) {
  static const std::pair<const char*, NpyDType> known[] = {
      {"<f4", NpyDType::F32}, {"<f8", NpyDType::F64}, {"<i4", NpyDType::I32}, {"<i8", NpyDType::I64},
      {"|u1", NpyDType::U8},  {"<u1", NpyDType::U8},  {"|b1", NpyDType::Bool}, {"<b1", NpyDType::Bool}};
  for (const auto& [name, dt] : known) {
    if (s == name) {
      *t = dt;
      return true;
    }
  }
  return false;
}

// A tiny parser for the Python dict literal of an .npy header:
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& where) : s_(text), where_(where) {}

  void parse(std::string* descr, bool* fortran, std::vector<int64_t>* shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    expect('{');
    while (true) {
      skip();
      if (peek() == '}') { ++i_; break; }
      const std::string key = string_literal();
      expect(':');
      skip();
      if (key == "descr") {
        *descr = string_literal();
        have_descr = true;
      } else if (key == "fortran_order") {
        *fortran = boolean();
        have_fortran = true;
      } else if (key == "shape") {
        *shape = tuple();
        have_shape = true;
      } else {
        bad(concat("unexpected key '", key, "'"));
      }
      skip();
      if (peek() == ',') { ++i_; continue; }
      if (peek() == '}') { ++i_; break; }
      bad("expected ',' or '}'");
    }
    if (!have_descr || !have_fortran || !have_shape)
      bad("needs the keys 'descr', 'fortran_order' and 'shape'");
  }

 private:
  const std::string& s_;
  const std::string& where_;
  size_t i_ = 0;

  [[noreturn]] void bad(const std::string& what) const {
    fail(where_, ": malformed .npy header (", what, " at character ", i_, "): ", s_);
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip() { while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n')) ++i_; }
  void expect(char c) {
    skip();
    if (peek() != c) bad(concat("expected '", c, "'"));
    ++i_;
  }
  std::string string_literal() {
    skip();
    const char q = peek();
    if (q != '\'' && q != '"') bad("expected a quoted string");
    const size_t end = s_.find(q, i_ + 1);
    if (end == std::string::npos) bad("unterminated string");
    std::string v = s_.substr(i_ + 1, end - i_ - 1);
    i_ = end + 1;
    return v;
  }
  bool boolean() {
    if (s_.compare(i_, 4, "True") == 0) { i_ += 4; return true; }
    if (s_.compare(i_, 5, "False") == 0) { i_ += 5; return false; }
    bad("expected True or False");
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> v;
    expect('(');
    while (true) {
      skip();
      if (peek() == ')') { ++i_; return v; }
      if (peek() < '0' || peek() > '9') bad("expected a non-negative integer in the shape");
      int64_t x = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (x > (INT64_MAX - 9) / 10) bad("shape value too large");
        x = x * 10 + (peek() - '0');
        ++i_;
      }
      if (peek() == 'L') ++i_;  // Python 2 long suffix
      v.push_back(x);
      skip();
      if (peek() == ',') { ++i_; continue; }
      if (peek() == ')') { ++i_; return v; }
      bad("expected ',' or ')' in the shape");
    }
  }
};

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) s += ",";
  return s + ")";
}

void write_file_atomic(const std::string& path, const std::vector<const std::vector<uint8_t>*>& pieces) {
  static std::atomic<int> counter{0};
  const std::string tmp = concat(path, ".tmp.", ::getpid(), ".", counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot write '", path, "': cannot create temporary file '", tmp, "': ", std::strerror(errno));
  const char* step = nullptr;
  int err = 0;
  for (const auto* piece : pieces) {
    size_t done = 0;
    while (!step && done < piece->size()) {
      const ssize_t n = ::write(fd, piece->data() + done, piece->size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        step = "write", err = errno;
      } else {
        done += size_t(n);
      }
    }
  }
  if (!step && ::fsync(fd) != 0) step = "fsync", err = errno;
  if (::close(fd) != 0 && !step) step = "close", err = errno;
  if (!step && ::rename(tmp.c_str(), path.c_str()) != 0) step = "rename the temporary file over it", err = errno;
  if (step) {
    ::unlink(tmp.c_str());
    fail("cannot write '", path, "': ", step, " failed: ", std::strerror(err));
  }
}

template <typename T>
T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

// ================================================================== dtype / array

const char* npy_descr(NpyDType t) {
  switch (t) {
    case NpyDType::F32: return "<f4";
    case NpyDType::F64: return "<f8";
    case NpyDType::I32: return "<i4";
    case NpyDType::I64: return "<i8";
    case NpyDType::U8: return "|u1";
    case NpyDType::Bool: return "|b1";
  }
  return "?";
}

size_t npy_itemsize(NpyDType t) {
  switch (t) {
    case NpyDType::F64: case NpyDType::I64: return 8;
    case NpyDType::F32: case NpyDType::I32: return 4;
    case NpyDType::U8: case NpyDType::Bool: return 1;
  }
  return 0;
}

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string NpyArray::shape_str() const { return shape_text(shape); }

std::vector<double> NpyArray::to_f64() const {
  const size_t n = size_t(numel());
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) {
    switch (dtype) {
      case NpyDType::F32: out[i] = load_le<float>(data + 4 * i); break;
      case NpyDType::F64: out[i] = load_le<double>(data + 8 * i); break;
      case NpyDType::I32: out[i] = load_le<int32_t>(data + 4 * i); break;
      case NpyDType::I64: out[i] = double(load_le<int64_t>(data + 8 * i)); break;
      case NpyDType::U8: case NpyDType::Bool: out[i] = data[i]; break;
    }
  }
  return out;
}

std::vector<float> NpyArray::to_f32() const {
  if (dtype == NpyDType::F32) {
    std::vector<float> out(static_cast<size_t>(numel()));
    if (!out.empty()) std::memcpy(out.data(), data, nbytes);
    return out;
  }
  const std::vector<double> d = to_f64();
  return std::vector<float>(d.begin(), d.end());
}

std::vector<int32_t> NpyArray::to_i32() const {
  const size_t n = size_t(numel());
  std::vector<int32_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    switch (dtype) {
      case NpyDType::I32: out[i] = load_le<int32_t>(data + 4 * i); break;
      case NpyDType::I64: {
        const int64_t v = load_le<int64_t>(data + 8 * i);
        if (v < INT32_MIN || v > INT32_MAX)
          fail(file, ": array '", name, "' element ", i, " = ", v, " does not fit in int32");
        out[i] = int32_t(v);
        break;
      }
      case NpyDType::U8: case NpyDType::Bool: out[i] = data[i]; break;
      default:
        fail(file, ": array '", name, "' has dtype ", npy_descr(dtype), ", expected an integer dtype (<i4, <i8, |u1, |b1)");
    }
  }
  return out;
}

const float* NpyArray::f32_view() const {
  DOFPOSE_CHECK(dtype == NpyDType::F32, file, ": array '", name, "' has dtype ", npy_descr(dtype), ", expected <f4");
  DOFPOSE_CHECK(reinterpret_cast<uintptr_t>(data) % alignof(float) == 0, file, ": array '", name,
                "' is not 4-byte aligned in the archive; use to_f32() for a copy");
  return reinterpret_cast<const float*>(data);
}

const int32_t* NpyArray::i32_view() const {
  DOFPOSE_CHECK(dtype == NpyDType::I32, file, ": array '", name, "' has dtype ", npy_descr(dtype), ", expected <i4");
  DOFPOSE_CHECK(reinterpret_cast<uintptr_t>(data) % alignof(int32_t) == 0, file, ": array '", name,
                "' is not 4-byte aligned in the archive; use to_i32() for a copy");
  return reinterpret_cast<const int32_t*>(data);
}

void NpyArray::expect_shape(const std::vector<int64_t>& expected) const {
  bool ok = expected.size() == shape.size();
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = expected[i] < 0 || expected[i] == shape[i];
  if (!ok) {
    std::string e = "(";
    for (size_t i = 0; i < expected.size(); ++i) e += (i ? ", " : "") + (expected[i] < 0 ? std::string("any") : std::to_string(expected[i]));
    fail(file, ": array '", name, "' has shape ", shape_str(), ", expected ", e, expected.size() == 1 ? ",)" : ")");
  }
}

// ================================================================== .npy

NpyArray parse_npy(const uint8_t* p, size_t size, const std::string& what, const std::string& name) {
  static const uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10 || std::memcmp(p, magic, 6) != 0)
    fail(what, ": bad magic, not an .npy array (expected \\x93NUMPY at the start of the member)");
  const int major = p[6];
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = rd16(p + 8), header_start = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) fail(what, ": truncated .npy header");
    header_len = rd32(p + 8), header_start = 12;
  } else {
    fail(what, ": unsupported .npy format version ", major, ".", int(p[7]), " (expected 1, 2 or 3)");
  }
  if (header_start + header_len > size)
    fail(what, ": truncated .npy header (needs ", header_start + header_len, " bytes, member has ", size, ")");
  const std::string header(reinterpret_cast<const char*>(p + header_start), header_len);
  std::string descr;
  bool fortran = false;
  NpyArray a;
  a.name = name;
  HeaderParser(header, what).parse(&descr, &fortran, &a.shape);
  if (!parse_descr(descr, &a.dtype)) {
    const bool big = !descr.empty() && descr[0] == '>';
    fail(what, ": unsupported dtype '", descr, "'", big ? " (big-endian)" : "",
         "; expected one of <f4, <f8, <i4, <i8, |u1, |b1");
  }
  if (fortran) fail(what, ": array is stored in Fortran order; save a C-contiguous array (np.ascontiguousarray)");
  int64_t n = 1;
  for (int64_t d : a.shape) {
    if (d != 0 && n > INT64_MAX / d) fail(what, ": shape ", shape_text(a.shape), " is too large");
    n *= d;
  }
  const size_t data_start = header_start + header_len;
  const size_t want = size_t(n) * npy_itemsize(a.dtype);
  const size_t have = size - data_start;
  if (have < want)
    fail(what, ": truncated data: shape ", shape_text(a.shape), " ", descr, " needs ", want, " bytes, found ", have);
  if (have > want)
    fail(what, ": ", have - want, " unexpected bytes after the data of shape ", shape_text(a.shape), " ", descr);
  a.data = p + data_start;
  a.nbytes = want;
  return a;
}

std::vector<uint8_t> npy_bytes(NpyDType dtype, const std::vector<int64_t>& shape, const void* data) {
  std::string header = concat("{'descr': '", npy_descr(dtype), "', 'fortran_order': False, 'shape': ", shape_text(shape), ", }");
  // numpy pads so that the data starts at a multiple of 64 bytes; the last
  // header character is a newline.
  const size_t total = (10 + header.size() + 1 + 63) / 64 * 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header.push_back('\n');
  DOFPOSE_CHECK(header.size() <= 0xFFFF, "npy writer: header of ", header.size(), " bytes is too long");
  int64_t n = 1;
  for (int64_t d : shape) {
    DOFPOSE_CHECK(d >= 0, "npy writer: negative dimension in shape ", shape_text(shape));
    n *= d;
  }
  const size_t nbytes = size_t(n) * npy_itemsize(dtype);
  std::vector<uint8_t> out;
  out.reserve(10 + header.size() + nbytes);
  const uint8_t magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.insert(out.end(), magic, magic + 8);
  wr16(out, uint32_t(header.size()));
  out.insert(out.end(), header.begin(), header.end());
  DOFPOSE_CHECK(nbytes == 0 || data != nullptr, "npy writer: null data for shape ", shape_text(shape));
  const uint8_t* d = static_cast<const uint8_t*>(data);
  if (nbytes) out.insert(out.end(), d, d + nbytes);
  return out;
}

void write_npy(const std::string& path, NpyDType dtype, const std::vector<int64_t>& shape, const void* data) {
  const std::vector<uint8_t> bytes = npy_bytes(dtype, shape, data);
  write_file_atomic(path, {&bytes});
}

// ================================================================== CRC-32

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc) {
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

// ================================================================== .npz reader

NpzFile::NpzFile(const std::string& path) : path_(path) {
  const std::string where = "npz '" + path + "'";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(where, ": cannot open: ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    fail(where, ": cannot stat: ", std::strerror(e));
  }
  size_ = size_t(st.st_size);
  if (size_ < 22) {
    ::close(fd);
    fail(where, ": ", size_, " bytes is too small for a ZIP archive (truncated or not an .npz)");
  }
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);
  if (m == MAP_FAILED) fail(where, ": cannot mmap ", size_, " bytes: ", std::strerror(map_err));
  map_ = static_cast<const uint8_t*>(m);

  try {
    const uint8_t* p = map_;
    // End of central directory: the last signature within the final 64 KiB + 22 bytes.
    size_t eocd = SIZE_MAX;
    const size_t lowest = size_ > 22 + 0xFFFF ? size_ - 22 - 0xFFFF : 0;
    for (size_t i = size_ - 22 + 1; i-- > lowest;) {
      if (rd32(p + i) == kEocdSig) { eocd = i; break; }
    }
    if (eocd == SIZE_MAX) {
      if (rd32(p) == kLocalSig) fail(where, ": truncated ZIP archive (no end-of-central-directory record)");
      fail(where, ": bad magic, not a ZIP/.npz archive (no end-of-central-directory record)");
    }
    uint64_t entries = rd16(p + eocd + 10);
    uint64_t cd_size = rd32(p + eocd + 12);
    uint64_t cd_offset = rd32(p + eocd + 16);
    if (entries == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
      if (eocd < 20 || rd32(p + eocd - 20) != kZip64LocatorSig)
        fail(where, ": ZIP64 archive without a ZIP64 end-of-central-directory locator");
      const uint64_t z64 = rd64(p + eocd - 20 + 8);
      if (z64 > size_ - 56 || rd32(p + z64) != kZip64EocdSig)
        fail(where, ": bad ZIP64 end-of-central-directory record at offset ", z64);
      entries = rd64(p + z64 + 32);
      cd_size = rd64(p + z64 + 40);
      cd_offset = rd64(p + z64 + 48);
    }
    if (cd_offset > size_ || cd_size > size_ - cd_offset)
      fail(where, ": truncated ZIP archive (central directory at ", cd_offset, "+", cd_size, " beyond the file's ",
           size_, " bytes)");

    size_t pos = size_t(cd_offset);
    const size_t cd_end = size_t(cd_offset + cd_size);
    for (uint64_t e = 0; e < entries; ++e) {
      if (pos + 46 > cd_end || rd32(p + pos) != kCentralSig)
        fail(where, ": corrupt central directory at entry ", e, " (offset ", pos, ")");
      const uint16_t flags = rd16(p + pos + 8);
      const uint16_t method = rd16(p + pos + 10);
      const uint32_t crc = rd32(p + pos + 16);
      uint64_t csize = rd32(p + pos + 20), usize = rd32(p + pos + 24);
      const size_t name_len = rd16(p + pos + 28), extra_len = rd16(p + pos + 30), comment_len = rd16(p + pos + 32);
      uint64_t local = rd32(p + pos + 42);
      if (pos + 46 + name_len + extra_len + comment_len > cd_end)
        fail(where, ": corrupt central directory at entry ", e, " (name/extra beyond its end)");
      const std::string member(reinterpret_cast<const char*>(p + pos + 46), name_len);
      const std::string mwhere = where + " member '" + member + "'";
      // ZIP64 extended information: the fields whose 32-bit value is all ones, in order.
      const uint8_t* x = p + pos + 46 + name_len;
      for (size_t xi = 0; xi + 4 <= extra_len;) {
        const uint16_t id = rd16(x + xi), len = rd16(x + xi + 2);
        if (xi + 4 + len > extra_len) fail(mwhere, ": corrupt extra field");
        if (id == 0x0001) {
          size_t q = xi + 4;
          auto take = [&](uint64_t* field) {
            if (*field != 0xFFFFFFFF) return;
            if (q + 8 > xi + 4 + len) fail(mwhere, ": ZIP64 extra field too short");
            *field = rd64(x + q);
            q += 8;
          };
          take(&usize);
          take(&csize);
          take(&local);
        }
        xi += 4 + len;
      }
      pos += 46 + name_len + extra_len + comment_len;

      if (flags & 1) fail(mwhere, " is encrypted; .npz archives must not be");
      if (method == 8) fail(mwhere, " is deflate-compressed; save with np.savez, not savez_compressed");
      if (method != 0) fail(mwhere, " uses ZIP compression method ", method, "; only stored (np.savez) members are supported");
      if (csize != usize) fail(mwhere, ": stored member with compressed size ", csize, " != size ", usize);
      if (local > size_ || size_ - local < 30 || rd32(p + local) != kLocalSig)
        fail(mwhere, ": truncated archive or bad local header offset ", local);
      const size_t data_off = size_t(local) + 30 + rd16(p + local + 26) + rd16(p + local + 28);
      if (data_off > size_ || usize > size_ - data_off)
        fail(mwhere, ": truncated archive (member data ends at ", data_off + usize, ", file has ", size_, " bytes)");
      if (member.size() < 4 || member.compare(member.size() - 4, 4, ".npy") != 0)
        fail(mwhere, ": not an .npy member (an .npz holds only <name>.npy files)");
      const std::string key = member.substr(0, member.size() - 4);
      NpyArray a = parse_npy(p + data_off, size_t(usize), mwhere, key);
      a.file = path_;
      if (!index_.emplace(key, arrays_.size()).second) fail(mwhere, ": duplicate key '", key, "'");
      arrays_.push_back(std::move(a));
      members_.push_back({p + data_off, size_t(usize), crc});
    }
    crc_checked_.assign(arrays_.size(), false);
  } catch (...) {
    release();
    throw;
  }
}

NpzFile::~NpzFile() { release(); }

void NpzFile::release() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
  map_ = nullptr;
  size_ = 0;
}

NpzFile::NpzFile(NpzFile&& o) noexcept
    : path_(std::move(o.path_)), map_(o.map_), size_(o.size_), arrays_(std::move(o.arrays_)),
      members_(std::move(o.members_)), crc_checked_(std::move(o.crc_checked_)), index_(std::move(o.index_)) {
  o.map_ = nullptr;
  o.size_ = 0;
}

NpzFile& NpzFile::operator=(NpzFile&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    map_ = o.map_;
    size_ = o.size_;
    arrays_ = std::move(o.arrays_);
    members_ = std::move(o.members_);
    crc_checked_ = std::move(o.crc_checked_);
    index_ = std::move(o.index_);
    o.map_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

std::vector<std::string> NpzFile::names() const {
  std::vector<std::string> out;
  for (const auto& a : arrays_) out.push_back(a.name);
  return out;
}

bool NpzFile::has(const std::string& name) const { return index_.count(name) != 0; }

const NpyArray& NpzFile::array(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    std::string some;
    size_t shown = 0;
    for (const auto& a : arrays_) {
      if (shown == 8) { some += ", ..."; break; }
      some += (shown++ ? ", '" : "'") + a.name + "'";
    }
    fail("npz '", path_, "': no array '", name, "' (", arrays_.size(), " arrays: ", some, ")");
  }
  const size_t i = it->second;
  if (!crc_checked_[i]) {
    const Member& m = members_[i];
    const uint32_t got = crc32(m.begin, m.size);
    if (got != m.crc)
      fail("npz '", path_, "' member '", name, ".npy': CRC-32 mismatch (stored ", m.crc, ", computed ", got,
           "); the file is corrupt");
    crc_checked_[i] = true;
  }
  return arrays_[i];
}

// ================================================================== .npz writer

void NpzWriter::add(const std::string& name, NpyDType dtype, const std::vector<int64_t>& shape, const void* data) {
  DOFPOSE_CHECK(!name.empty(), "npz writer: empty array name");
  for (const auto& m : members_) DOFPOSE_CHECK(m.name != name, "npz writer: array '", name, "' added twice");
  std::vector<uint8_t> npy = npy_bytes(dtype, shape, data);
  DOFPOSE_CHECK(npy.size() < 0xFFFFFFFFull, "npz writer: array '", name, "' is ", npy.size(),
                " bytes; members over 4 GiB (ZIP64) are not supported by the writer");
  members_.push_back({name, std::move(npy)});
}

void NpzWriter::write(const std::string& path) const {
  DOFPOSE_CHECK(members_.size() < 0xFFFF, "npz writer: ", members_.size(), " arrays is more than a plain ZIP holds");
  std::vector<std::vector<uint8_t>> locals;
  std::vector<uint8_t> central;
  uint64_t offset = 0;
  for (const auto& m : members_) {
    const std::string fname = m.name + ".npy";
    bool ascii = true;
    for (unsigned char c : fname) ascii = ascii && c < 0x80;
    const uint16_t flags = ascii ? 0 : 0x0800;  // bit 11: UTF-8 names
    const uint32_t crc = crc32(m.npy.data(), m.npy.size());
    const uint32_t size = uint32_t(m.npy.size());
    DOFPOSE_CHECK(offset < 0xFFFFFFFFull, "npz writer: '", path, "' would exceed 4 GiB (ZIP64 not supported by the writer)");
    std::vector<uint8_t> h;
    wr32(h, kLocalSig);
    wr16(h, 20); wr16(h, flags); wr16(h, 0); wr16(h, 0); wr16(h, 0x21);  // version, flags, stored, time, date 1980-01-01
    wr32(h, crc); wr32(h, size); wr32(h, size);
    wr16(h, uint32_t(fname.size())); wr16(h, 0);
    h.insert(h.end(), fname.begin(), fname.end());

    wr32(central, kCentralSig);
    wr16(central, 20); wr16(central, 20); wr16(central, flags); wr16(central, 0); wr16(central, 0); wr16(central, 0x21);
    wr32(central, crc); wr32(central, size); wr32(central, size);
    wr16(central, uint32_t(fname.size())); wr16(central, 0); wr16(central, 0); wr16(central, 0); wr16(central, 0);
    wr32(central, 0); wr32(central, uint32_t(offset));
    central.insert(central.end(), fname.begin(), fname.end());

    offset += h.size() + m.npy.size();
    locals.push_back(std::move(h));
  }
  DOFPOSE_CHECK(offset < 0xFFFFFFFFull, "npz writer: '", path, "' would exceed 4 GiB (ZIP64 not supported by the writer)");
  std::vector<uint8_t> end;
  wr32(end, kEocdSig);
  wr16(end, 0); wr16(end, 0);
  wr16(end, uint32_t(members_.size())); wr16(end, uint32_t(members_.size()));
  wr32(end, uint32_t(central.size())); wr32(end, uint32_t(offset));
  wr16(end, 0);

  std::vector<const std::vector<uint8_t>*> pieces;
  for (size_t i = 0; i < members_.size(); ++i) {
    pieces.push_back(&locals[i]);
    pieces.push_back(&members_[i].npy);
  }
  pieces.push_back(&central);
  pieces.push_back(&end);
  write_file_atomic(path, pieces);
}

}  // namespace dofpose
