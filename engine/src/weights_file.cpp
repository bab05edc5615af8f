// Weights files (safetensors-compatible): the validating, memory-mapped reader
// WeightsFile and the atomic writer WeightsWriter. docs/weights-format.md is
// the spec; every rule enforced here is listed there.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "dofpose/weights.h"

namespace dofpose {

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the safetensors reference limit
constexpr size_t kDataAlignment = 64;              // data section start, in file bytes
const char* const kMetadataKey = "__metadata__";

std::string file_prefix(const std::string& path) { return "file " + path + ": "; }

// Returns the offset of the first byte that breaks UTF-8 (overlong forms,
// surrogates and code points above U+10FFFF included), or npos when valid.
size_t first_invalid_utf8(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2, cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3, cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4, cp = c & 0x07u;
    } else {
      return i;  // continuation byte, overlong 2-byte lead (C0/C1) or F5..FF
    }
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0u) != 0x80u) return i;
      cp = (cp << 6) | (s[i + k] & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return i;
    i += len;
  }
  return std::string::npos;
}

bool is_valid_utf8(const std::string& s) {
  return first_invalid_utf8(reinterpret_cast<const uint8_t*>(s.data()), s.size()) ==
         std::string::npos;
}

bool parse_dtype(const std::string& name, DType* out) {
  static const std::pair<const char*, DType> kKnown[] = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16},
      {"I32", DType::I32}, {"U8", DType::U8}};
  for (const auto& [n, t] : kKnown)
    if (name == n) {
      *out = t;
      return true;
    }
  return false;
}

// safetensors dtypes that are valid in the format but that dofpose does not use.
bool is_other_safetensors_dtype(const std::string& name) {
  static const char* const kOthers[] = {"F64", "I64", "U64", "U32", "I16", "U16", "I8",
                                        "BOOL", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3",
                                        "F6_E3M2", "F4", "C64"};
  for (const char* n : kOthers)
    if (name == n) return true;
  return false;
}

// A short, bounded rendering of a JSON value for error messages.
std::string json_excerpt(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }

// Index of the first NaN/Inf element of a floating-point tensor, or -1.
int64_t first_non_finite(const uint8_t* p, DType dtype, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    float f;
    switch (dtype) {
      case DType::F32:
        std::memcpy(&f, p + 4 * i, 4);
        if (!std::isfinite(f)) return i;
        break;
      case DType::F16:
        std::memcpy(&h, p + 2 * i, 2);
        if ((h & 0x7C00u) == 0x7C00u) return i;
        break;
      case DType::BF16:
        std::memcpy(&h, p + 2 * i, 2);
        if ((h & 0x7F80u) == 0x7F80u) return i;
        break;
      default:
        return -1;
    }
  }
  return -1;
}

// Multi-index "[i,j,k]" of flat index `flat` in `shape` (row-major).
std::string index_str(const Shape& shape, int64_t flat) {
  int64_t idx[kMaxDims] = {0, 0, 0, 0, 0};
  for (int d = shape.ndim - 1; d >= 0; --d) {
    if (shape.dims[d] > 0) {
      idx[d] = flat % shape.dims[d];
      flat /= shape.dims[d];
    }
  }
  std::string s = "[";
  for (int d = 0; d < shape.ndim; ++d) s += (d ? "," : "") + std::to_string(idx[d]);
  return s + "]";
}

// Converts n stored elements (possibly unaligned bytes) to float32.
void convert_to_f32(const uint8_t* src, DType dtype, int64_t n, float* dst) {
  switch (dtype) {
    case DType::F32:
      if (n > 0) std::memcpy(dst, src, size_t(n) * 4);
      break;
    case DType::F16:
    case DType::BF16: {
      const bool half = dtype == DType::F16;
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = half ? f16_to_f32(h) : bf16_to_f32(h);
      }
      break;
    }
    default:
      break;  // callers reject integer dtypes first
  }
}

}  // namespace

// ============================================================== WeightsFile

WeightsFile::WeightsFile(const std::string& path, WeightsLoadOptions opt) : path_(path) {
  const std::string where = file_prefix(path);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(where, "cannot open for reading: ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail(where, "cannot stat: ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(where, "not a regular file");
  }
  const uint64_t file_size = uint64_t(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    fail(where, "file is ", file_size,
         " bytes, expected at least 8 (the little-endian header length)");
  }
  void* map = ::mmap(nullptr, size_t(file_size), PROT_READ, MAP_PRIVATE, fd, 0);
  int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) fail(where, "cannot mmap ", file_size, " bytes: ", std::strerror(map_err));
  map_ = map;
  map_size_ = size_t(file_size);
  open_bytes(static_cast<const uint8_t*>(map_), file_size, opt);
}

WeightsFile WeightsFile::from_memory(const void* bytes, size_t size, std::string name,
                                     WeightsLoadOptions opt) {
  WeightsFile w;
  w.path_ = std::move(name);
  DOFPOSE_CHECK(bytes != nullptr || size == 0, file_prefix(w.path_), "no bytes (null pointer)");
  DOFPOSE_CHECK(size >= 8, file_prefix(w.path_), "buffer is ", size,
                " bytes, expected at least 8 (the little-endian header length)");
  // map_ stays null: the bytes belong to the caller and are never unmapped.
  w.open_bytes(static_cast<const uint8_t*>(bytes), size, opt);
  return w;
}

// Validates the whole file image (header length, header, offsets) and sets
// data_; on failure releases everything (close()) and rethrows.
void WeightsFile::open_bytes(const uint8_t* bytes, uint64_t file_size, WeightsLoadOptions opt) {
  const std::string where = file_prefix(path_);
  try {
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];  // little-endian
    DOFPOSE_CHECK(header_len <= kMaxHeaderBytes, where, "header length ", header_len,
                  " exceeds the limit of ", kMaxHeaderBytes, " bytes (corrupt or not a weights file)");
    DOFPOSE_CHECK(header_len <= file_size - 8, where, "header length ", header_len,
                  " exceeds the file: only ", file_size - 8,
                  " bytes follow the 8-byte length (truncated file?)");
    data_ = bytes + 8 + header_len;
    data_offset_ = 8 + header_len;
    parse_header(bytes + 8, header_len, file_size - 8 - header_len);
    if (opt.check_finite)
      for (const WeightsEntry& e : entries_) check_finite(e);
  } catch (...) {
    close();
    throw;
  }
}

void WeightsFile::parse_header(const uint8_t* header, uint64_t header_len, uint64_t data_size) {
  const std::string where = file_prefix(path_);
  const size_t bad = first_invalid_utf8(header, size_t(header_len));
  DOFPOSE_CHECK(bad == std::string::npos, where, "header is not valid UTF-8 (byte ", bad,
                " of the ", header_len, "-byte header)");

  // Parse, rejecting duplicate keys in any object (nlohmann would keep the last).
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto callback = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !open_objects.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json root;
  try {
    root = json::parse(header, header + header_len, callback);
  } catch (const json::exception& e) {
    fail(where, "header is not valid JSON: ", e.what());
  }
  DOFPOSE_CHECK(duplicate.empty(), where, "header is not valid: key '", duplicate,
                "' appears twice in one object");
  DOFPOSE_CHECK(root.is_object(), where, "header is not valid: expected a JSON object, found ",
                root.type_name());

  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const json& value = it.value();
    if (name == kMetadataKey) {
      if (value.is_null()) continue;  // safetensors writes null for "no metadata"
      DOFPOSE_CHECK(value.is_object(), where, "\"__metadata__\" must be an object of strings, found ",
                    value.type_name());
      for (auto m = value.begin(); m != value.end(); ++m) {
        DOFPOSE_CHECK(m.value().is_string(), where, "metadata '", m.key(),
                      "' must be a string, found ", m.value().type_name(), " ",
                      json_excerpt(m.value()));
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = where + "tensor '" + name + "': ";
    DOFPOSE_CHECK(!name.empty(), where, "a tensor has an empty name");
    DOFPOSE_CHECK(value.is_object(), what, "expected an object {dtype, shape, data_offsets}, found ",
                  value.type_name());
    for (auto f = value.begin(); f != value.end(); ++f)
      DOFPOSE_CHECK(f.key() == "dtype" || f.key() == "shape" || f.key() == "data_offsets", what,
                    "unexpected field '", f.key(), "' (expected dtype, shape, data_offsets)");
    for (const char* field : {"dtype", "shape", "data_offsets"})
      DOFPOSE_CHECK(value.contains(field), what, "missing field '", field, "'");

    WeightsEntry e;
    e.name = name;
    const json& dtype = value["dtype"];
    DOFPOSE_CHECK(dtype.is_string(), what, "dtype must be a string, found ", json_excerpt(dtype));
    const std::string dname = dtype.get<std::string>();
    if (!parse_dtype(dname, &e.dtype)) {
      DOFPOSE_CHECK(!is_other_safetensors_dtype(dname), what, "unsupported dtype ", dname,
                    " (dofpose reads F32, F16, BF16, I32, U8)");
      fail(what, "unknown dtype '", dname, "' (expected one of F32, F16, BF16, I32, U8)");
    }

    const json& shape = value["shape"];
    DOFPOSE_CHECK(shape.is_array(), what, "shape must be an array, found ", json_excerpt(shape));
    DOFPOSE_CHECK(shape.size() <= size_t(kMaxDims), what, "shape ", json_excerpt(shape), " has ",
                  shape.size(), " dims, at most ", kMaxDims, " are supported");
    uint64_t numel = 1;
    for (const json& d : shape) {
      DOFPOSE_CHECK(d.is_number_unsigned(), what, "shape ", json_excerpt(shape),
                    ": dimensions must be non-negative integers, found ", json_excerpt(d));
      const uint64_t v = d.get<uint64_t>();
      DOFPOSE_CHECK(v <= uint64_t(std::numeric_limits<int64_t>::max()) && checked_mul(numel, v, &numel),
                    what, "shape ", json_excerpt(shape), " is too large");
      e.shape.dims[e.shape.ndim++] = int64_t(v);
    }
    uint64_t expected_bytes = 0;
    DOFPOSE_CHECK(checked_mul(numel, dtype_size(e.dtype), &expected_bytes) &&
                      numel <= uint64_t(std::numeric_limits<int64_t>::max()),
                  what, "shape ", e.shape.str(), " is too large");

    const json& offsets = value["data_offsets"];
    DOFPOSE_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                      offsets[1].is_number_unsigned(),
                  what, "data_offsets must be [begin, end] with non-negative integers, found ",
                  json_excerpt(offsets));
    e.begin = offsets[0].get<uint64_t>();
    e.end = offsets[1].get<uint64_t>();
    DOFPOSE_CHECK(e.begin <= e.end, what, "data_offsets [", e.begin, ",", e.end,
                  "]: begin is after end");
    DOFPOSE_CHECK(e.end <= data_size, what, "data_offsets [", e.begin, ",", e.end,
                  "] end past the data section of ", data_size, " bytes (truncated file?)");
    DOFPOSE_CHECK(e.end - e.begin == expected_bytes, what, "data_offsets [", e.begin, ",", e.end,
                  "] hold ", e.end - e.begin, " bytes, expected ", expected_bytes, " for ",
                  dtype_name(e.dtype), e.shape.str());
    entries_.push_back(std::move(e));
  }

  // File order; then no two non-empty byte ranges may share a byte.
  std::sort(entries_.begin(), entries_.end(), [](const WeightsEntry& a, const WeightsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end != b.end ? a.end < b.end : a.name < b.name;
  });
  const WeightsEntry* furthest = nullptr;  // the non-empty range reaching furthest so far
  for (const WeightsEntry& e : entries_) {
    if (e.begin == e.end) continue;
    DOFPOSE_CHECK(furthest == nullptr || e.begin >= furthest->end, where, "tensor '", e.name,
                  "' data_offsets [", e.begin, ",", e.end, "] overlap tensor '",
                  furthest ? furthest->name : "", "' [", furthest ? furthest->begin : 0, ",",
                  furthest ? furthest->end : 0, "]");
    if (furthest == nullptr || e.end > furthest->end) furthest = &e;
  }
  for (size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].name] = i;
}

void WeightsFile::check_finite(const WeightsEntry& e) const {
  if (e.dtype != DType::F32 && e.dtype != DType::F16 && e.dtype != DType::BF16) return;
  const int64_t bad = first_non_finite(data_ + e.begin, e.dtype, e.shape.numel());
  if (bad < 0) return;
  float value = 0;
  convert_to_f32(data_ + e.begin + size_t(bad) * dtype_size(e.dtype), e.dtype, 1, &value);
  fail(file_prefix(path_), "tensor '", e.name, "' has a non-finite value (", value,
       ") at flat index ", bad, " ", index_str(e.shape, bad), "; expected only finite values");
}

WeightsFile::~WeightsFile() { close(); }

void WeightsFile::close() {
  if (map_) ::munmap(map_, map_size_);
  map_ = nullptr;
  map_size_ = 0;
  data_ = nullptr;
  data_offset_ = 0;
  entries_.clear();
  index_.clear();
  metadata_.clear();
}

WeightsFile::WeightsFile(WeightsFile&& o) noexcept { *this = std::move(o); }

WeightsFile& WeightsFile::operator=(WeightsFile&& o) noexcept {
  if (this != &o) {
    close();
    path_ = std::move(o.path_);
    map_ = std::exchange(o.map_, nullptr);
    map_size_ = std::exchange(o.map_size_, 0);
    data_ = std::exchange(o.data_, nullptr);
    data_offset_ = std::exchange(o.data_offset_, 0);
    entries_ = std::move(o.entries_);
    index_ = std::move(o.index_);
    metadata_ = std::move(o.metadata_);
    o.close();
  }
  return *this;
}

bool WeightsFile::has(const std::string& name) const { return index_.count(name) != 0; }

const WeightsEntry& WeightsFile::entry(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    std::string known;
    size_t shown = 0;
    for (const WeightsEntry& e : entries_) {
      if (shown++ == 8) {
        known += ", ...";
        break;
      }
      known += (known.empty() ? "" : ", ") + ("'" + e.name + "'");
    }
    fail(file_prefix(path_), "no tensor named '", name, "' (the file has ", entries_.size(),
         " tensors", known.empty() ? "" : ": ", known, ")");
  }
  return entries_[it->second];
}

std::vector<std::string> WeightsFile::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const WeightsEntry& e : entries_) out.push_back(e.name);
  return out;
}

TensorView WeightsFile::raw(const std::string& name) const {
  const WeightsEntry& e = entry(name);
  const uint8_t* p = data_ + e.begin;
  DOFPOSE_CHECK(reinterpret_cast<uintptr_t>(p) % dtype_size(e.dtype) == 0, file_prefix(path_),
                "tensor '", name, "' (", dtype_name(e.dtype), ") starts at file byte ",
                data_offset_ + e.begin, ", not aligned to ",
                dtype_size(e.dtype), " bytes (file not written with the dofpose alignment rule); "
                "use load_copy or load_f32");
  // The mapping is read-only: callers must not write through this view.
  return TensorView(const_cast<uint8_t*>(p), e.shape, e.dtype, Device::CPU);
}

Tensor WeightsFile::load_copy(const std::string& name) const {
  const WeightsEntry& e = entry(name);
  Tensor out = Tensor::empty(e.shape, e.dtype, Device::CPU);
  if (e.end > e.begin) std::memcpy(out.view().data, data_ + e.begin, e.end - e.begin);
  return out;
}

Tensor WeightsFile::load_f32(const std::string& name, const Shape& expected) const {
  const WeightsEntry& e = entry(name);
  Tensor out = Tensor::empty(e.shape, DType::F32, Device::CPU);
  // An empty expected Shape accepts any shape (so it cannot insist on 0-d).
  load_into(name, expected.ndim == 0 ? out.view() : TensorView(out.view().data, expected));
  return out;
}

void WeightsFile::load_into(const std::string& name, const TensorView& dst) const {
  const WeightsEntry& e = entry(name);
  const std::string where = file_prefix(path_);
  DOFPOSE_CHECK(e.shape == dst.shape, where, "tensor '", name, "' has shape ", e.shape.str(),
                ", expected ", dst.shape.str());
  DOFPOSE_CHECK(e.dtype == DType::F32 || e.dtype == DType::F16 || e.dtype == DType::BF16, where,
                "tensor '", name, "' has dtype ", dtype_name(e.dtype),
                ", expected a floating-point dtype (F32, F16 or BF16) to load as float32");
  DOFPOSE_CHECK(dst.dtype == DType::F32 && dst.device == Device::CPU && dst.is_contiguous() &&
                    (dst.data != nullptr || dst.numel() == 0),
                where, "tensor '", name, "': destination ", dst.str(),
                " must be a contiguous float32 CPU view");
  convert_to_f32(data_ + e.begin, e.dtype, e.shape.numel(), static_cast<float*>(dst.data));
}

std::string WeightsFile::metadata_or(const std::string& key, const std::string& fallback) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? fallback : it->second;
}

// ============================================================= WeightsWriter

void WeightsWriter::add(const std::string& name, const TensorView& t, DType stored_as) {
  const std::string what = "WeightsWriter: tensor '" + name + "': ";
  DOFPOSE_CHECK(t.is_contiguous(), what, t.str(), " is not contiguous");
  DOFPOSE_CHECK(t.data != nullptr || t.numel() == 0, what, t.str(), " has no data");
  DOFPOSE_CHECK(t.dtype == stored_as ||
                    (t.dtype == DType::F32 && (stored_as == DType::F16 || stored_as == DType::BF16)),
                what, "cannot store a ", dtype_name(t.dtype), " tensor as ", dtype_name(stored_as),
                " (only F32 -> F16/BF16 is converted; pass stored_as = ", dtype_name(t.dtype), ")");
  // Bring device memory to the host first.
  Tensor host;
  const TensorView* src = &t;
  if (t.device != Device::CPU) {
    host = Tensor::empty(t.shape, t.dtype, Device::CPU);
    copy(t, host.view());
    src = &host.view();
  }
  if (t.dtype == stored_as) {
    add_raw(name, stored_as, t.shape, src->data);
    return;
  }
  const int64_t n = t.numel();
  std::vector<uint16_t> converted(static_cast<size_t>(n));
  const float* f = static_cast<const float*>(src->data);
  for (int64_t i = 0; i < n; ++i)
    converted[size_t(i)] = stored_as == DType::F16 ? f32_to_f16(f[i]) : f32_to_bf16(f[i]);
  add_raw(name, stored_as, t.shape, converted.data());
}

void WeightsWriter::add_raw(const std::string& name, DType dtype, const Shape& shape,
                            const void* bytes) {
  const std::string what = "WeightsWriter: tensor '" + name + "': ";
  DOFPOSE_CHECK(!name.empty(), "WeightsWriter: tensor names must not be empty");
  DOFPOSE_CHECK(name != kMetadataKey, what, "the name is reserved for the metadata");
  DOFPOSE_CHECK(is_valid_utf8(name), "WeightsWriter: tensor name is not valid UTF-8");
  for (const Item& it : items_)
    DOFPOSE_CHECK(it.name != name, what, "added twice");
  const size_t nbytes = size_t(shape.numel()) * dtype_size(dtype);
  DOFPOSE_CHECK(bytes != nullptr || nbytes == 0, what, "no data for ", dtype_name(dtype),
                shape.str());
  Item item{name, dtype, shape, {}};
  if (nbytes) item.bytes.assign(static_cast<const uint8_t*>(bytes),
                                static_cast<const uint8_t*>(bytes) + nbytes);
  items_.push_back(std::move(item));
}

void WeightsWriter::set_metadata(const std::string& key, const std::string& value) {
  DOFPOSE_CHECK(is_valid_utf8(key), "WeightsWriter: metadata key is not valid UTF-8");
  DOFPOSE_CHECK(is_valid_utf8(value), "WeightsWriter: metadata '", key,
                "': value is not valid UTF-8");
  metadata_[key] = value;
}

namespace {

// write(2) until done; EINTR is retried, partial writes continue.
bool write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= size_t(w);
  }
  return true;
}

std::string parent_directory(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

void WeightsWriter::write(const std::string& path) const {
  const std::string where = "WeightsWriter: " + file_prefix(path);

  // Largest element size first keeps every tensor aligned to its element size
  // once the data section itself is 64-byte aligned; then by name, so the
  // bytes do not depend on the order of add() calls.
  std::vector<const Item*> order;
  for (const Item& it : items_) order.push_back(&it);
  std::stable_sort(order.begin(), order.end(), [](const Item* a, const Item* b) {
    size_t sa = dtype_size(a->dtype), sb = dtype_size(b->dtype);
    return sa != sb ? sa > sb : a->name < b->name;
  });

  json header = json::object();
  uint64_t offset = 0;
  for (const Item* it : order) {
    json shape = json::array();
    for (int d = 0; d < it->shape.ndim; ++d) shape.push_back(it->shape.dims[d]);
    header[it->name] = {{"dtype", dtype_name(it->dtype)},
                        {"shape", shape},
                        {"data_offsets", {offset, offset + it->bytes.size()}}};
    offset += it->bytes.size();
  }
  if (!metadata_.empty()) header[kMetadataKey] = metadata_;
  std::string text = header.dump();
  text.append((kDataAlignment - (8 + text.size()) % kDataAlignment) % kDataAlignment, ' ');
  DOFPOSE_CHECK(text.size() <= kMaxHeaderBytes, where, "header of ", text.size(),
                " bytes exceeds the limit of ", kMaxHeaderBytes);
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = uint8_t(uint64_t(text.size()) >> (8 * i));

  // Unique per process and per call, so concurrent writers never share a temporary.
  static std::atomic<unsigned> counter{0};
  const std::string tmp =
      path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(where, "cannot create temporary file '", tmp, "': ", std::strerror(errno));

  const char* step = nullptr;
  if (!write_all(fd, length, 8) ||
      !write_all(fd, reinterpret_cast<const uint8_t*>(text.data()), text.size()))
    step = "write the header";
  for (size_t i = 0; !step && i < order.size(); ++i)
    if (!write_all(fd, order[i]->bytes.data(), order[i]->bytes.size())) step = "write tensor data";
  if (!step && ::fsync(fd) != 0) step = "fsync";
  int err = errno;
  if (::close(fd) != 0 && !step) {
    step = "close";
    err = errno;
  }
  if (!step && ::rename(tmp.c_str(), path.c_str()) != 0) {
    step = "rename the temporary over it";
    err = errno;
  }
  if (step) {
    ::unlink(tmp.c_str());
    fail(where, "cannot ", step, " (temporary '", tmp, "' removed): ", std::strerror(err));
  }
  // Make the rename itself durable; the file is complete either way.
  int dir = ::open(parent_directory(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace dofpose
