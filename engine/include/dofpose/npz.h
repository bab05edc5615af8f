// NumPy .npy / .npz files without Python: a reader for uncompressed .npz
// archives (np.savez: a ZIP of stored .npy members, ZIP64 included) and
// writers for .npy and stored .npz files. Little-endian, C order only.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dofpose {

enum class NpyDType : uint8_t { F32, F64, I32, I64, U8, Bool };
const char* npy_descr(NpyDType t);  // "<f4", "<f8", "<i4", "<i8", "|u1", "|b1"
size_t npy_itemsize(NpyDType t);

// One array of an archive: metadata plus a read-only view of its bytes, valid
// while the NpzFile that produced it lives.
struct NpyArray {
  std::string name;  // archive key (member name without ".npy")
  std::string file;  // for error messages
  NpyDType dtype = NpyDType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // numel * itemsize bytes, possibly unaligned
  size_t nbytes = 0;

  int64_t numel() const;
  std::string shape_str() const;  // "(323, 17, 3)"
  // Converting copies. to_f32 accepts any numeric dtype (f64 rounded);
  // to_i32 accepts integer/bool dtypes and throws when an i64 value is out of range.
  std::vector<float> to_f32() const;
  std::vector<double> to_f64() const;
  std::vector<int32_t> to_i32() const;
  // Zero-copy typed views; throw when the dtype differs or the bytes are not
  // aligned to the element size (use the copies then).
  const float* f32_view() const;
  const int32_t* i32_view() const;
  // Throws "file: array 'name' has shape (..), expected (..)" (-1 matches any size).
  void expect_shape(const std::vector<int64_t>& expected) const;
};

// An .npz archive, memory-mapped and validated on open (ZIP structure, member
// compression, .npy headers, sizes). Every error names the file and member.
class NpzFile {
 public:
  explicit NpzFile(const std::string& path);
  ~NpzFile();
  NpzFile(NpzFile&& o) noexcept;
  NpzFile& operator=(NpzFile&& o) noexcept;
  NpzFile(const NpzFile&) = delete;
  NpzFile& operator=(const NpzFile&) = delete;

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // in archive order
  bool has(const std::string& name) const;
  // The array (checks the member's CRC-32 on first access); throws naming the
  // file and listing a few keys when the name is missing.
  const NpyArray& array(const std::string& name) const;

 private:
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t size_ = 0;
  std::vector<NpyArray> arrays_;
  struct Member {
    const uint8_t* begin;  // the whole .npy member, which the CRC covers
    size_t size;
    uint32_t crc;
  };
  std::vector<Member> members_;
  mutable std::vector<bool> crc_checked_;
  std::map<std::string, size_t> index_;
  void release();
};

// Serialises one array as .npy (format version 1.0, header padded to 64 bytes).
std::vector<uint8_t> npy_bytes(NpyDType dtype, const std::vector<int64_t>& shape, const void* data);
// Parses a whole .npy file image; `what` names it in errors. The returned
// view points into `bytes`.
NpyArray parse_npy(const uint8_t* bytes, size_t size, const std::string& what, const std::string& name);
// Writes an .npy file atomically (temporary file in the same folder, then rename).
void write_npy(const std::string& path, NpyDType dtype, const std::vector<int64_t>& shape, const void* data);

// Collects arrays (copied on add) and writes them as an uncompressed .npz
// that np.load reads, atomically. Members larger than 4 GiB are refused.
class NpzWriter {
 public:
  void add(const std::string& name, NpyDType dtype, const std::vector<int64_t>& shape, const void* data);
  void add_f32(const std::string& name, const std::vector<int64_t>& shape, const float* data) {
    add(name, NpyDType::F32, shape, data);
  }
  void add_i32(const std::string& name, const std::vector<int64_t>& shape, const int32_t* data) {
    add(name, NpyDType::I32, shape, data);
  }
  void write(const std::string& path) const;

 private:
  struct Member {
    std::string name;
    std::vector<uint8_t> npy;
  };
  std::vector<Member> members_;
};

// CRC-32 (ZIP polynomial) of a byte range.
uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0);

}  // namespace dofpose
