// Weights files: safetensors-compatible (8-byte little-endian header length,
// JSON header, raw little-endian data). See docs/weights-format.md.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dofpose/tensor.h"

namespace dofpose {

struct WeightsEntry {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte offsets relative to the data section
};

struct WeightsLoadOptions {
  bool check_finite = false;  // reject NaN/Inf in floating-point tensors
};

// A read-only, memory-mapped weights file, fully validated on open: header
// length within the file, well-formed UTF-8 JSON, known dtypes, shapes
// consistent with byte lengths, offsets in range and non-overlapping.
// Every error names the file, the tensor and what was expected.
class WeightsFile {
 public:
  WeightsFile() = default;
  explicit WeightsFile(const std::string& path, WeightsLoadOptions opt = {});
  ~WeightsFile();
  WeightsFile(WeightsFile&& o) noexcept;
  WeightsFile& operator=(WeightsFile&& o) noexcept;
  WeightsFile(const WeightsFile&) = delete;
  WeightsFile& operator=(const WeightsFile&) = delete;

  // Opens weights already in memory (e.g. embedded in the program) with the
  // same validation as a file. Nothing is copied: `bytes` must outlive the
  // returned object. `name` stands in for the path in path() and in errors.
  // Tensors are aligned for raw() when `bytes` is 64-byte aligned.
  static WeightsFile from_memory(const void* bytes, size_t size, std::string name,
                                 WeightsLoadOptions opt = {});

  const std::string& path() const { return path_; }
  bool has(const std::string& name) const;
  const WeightsEntry& entry(const std::string& name) const;  // throws naming file and tensor
  std::vector<std::string> names() const;                    // in file (data offset) order
  const std::vector<WeightsEntry>& entries() const { return entries_; }  // in file order
  // A view of the mapped bytes, any dtype. Throws if the name is missing, or
  // if the tensor is not aligned to its element size (a file not written with
  // the dofpose alignment rule; load_copy / load_f32 work for those).
  TensorView raw(const std::string& name) const;
  // A CPU copy in the stored dtype (works whatever the alignment).
  Tensor load_copy(const std::string& name) const;
  // The tensor as float32 (F16/BF16 converted), checked against `expected`
  // (an empty Shape accepts any shape).
  Tensor load_f32(const std::string& name, const Shape& expected = Shape()) const;
  // Copies into an existing float32 CPU view of the expected shape.
  void load_into(const std::string& name, const TensorView& dst) const;

  // "__metadata__" entries (string -> string).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::string metadata_or(const std::string& key, const std::string& fallback) const;

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  uint64_t data_offset_ = 0;       // where the data section starts in the file's bytes
  std::vector<WeightsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  void close();
  void open_bytes(const uint8_t* bytes, uint64_t size, WeightsLoadOptions opt);
  void parse_header(const uint8_t* header, uint64_t header_len, uint64_t data_size);
  void check_finite(const WeightsEntry& e) const;
};

// Builds a weights file in memory and writes it atomically (temporary file
// "<path>.tmp.<pid>.<n>" in the same directory, fsync, rename; on any error
// the temporary is removed and an existing file at `path` is left untouched).
// The header is padded so the data section starts at a multiple of 64 bytes,
// and tensors are ordered by element size (largest first), then by name.
class WeightsWriter {
 public:
  // Stores `t` (contiguous, any device) as `stored_as`: the same dtype, or an
  // F32 view converted to F16/BF16 (round to nearest even). Names must be
  // unique, non-empty UTF-8 and not "__metadata__".
  void add(const std::string& name, const TensorView& t, DType stored_as = DType::F32);
  void add_raw(const std::string& name, DType dtype, const Shape& shape, const void* bytes);
  void set_metadata(const std::string& key, const std::string& value);
  void write(const std::string& path) const;

 private:
  struct Item {
    std::string name;
    DType dtype;
    Shape shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Item> items_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace dofpose
