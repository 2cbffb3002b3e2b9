// SafetensorsFile: a read-only, memory-mapped .safetensors file whose header has been checked against
// the file size; and write_safetensors, the writer used by converters and tests.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/buffer.h"
#include "core/tensor.h"

namespace skv {

// One tensor of a safetensors file. `data` points into the file's mapping (read-only memory).
struct SafetensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  const void* data = nullptr;  // aligned to the dtype size (see SafetensorsFile)
  size_t nbytes = 0;
  size_t offset = 0;  // of the first byte, from the start of the data section

  // A contiguous view of the tensor in its file dtype. The memory is mapped PROT_READ: writing
  // through the view faults, the non-const pointer is only what TensorView's type demands.
  TensorView view() const { return TensorView(const_cast<void*>(data), dtype, shape); }
};

// Safetensors dtype strings ("F32", "BF16", ...) <-> DType.
const char* safetensors_dtype_name(DType dtype);
bool parse_safetensors_dtype(std::string_view name, DType* out);

// The spec does not require tensors to be aligned; a tensor whose bytes in the file are not aligned to its
// dtype size (e.g. after an odd-sized U8 tensor, or an unpadded header) is copied once into an owned aligned
// buffer, so that every `data` pointer is safe for typed loads. Aligned tensors are never copied.
class SafetensorsFile {
 public:
  // Maps `path` and validates the header: throws Error (kNotFound, kParse or kUnsupported) naming the
  // file, and the tensor where one is at fault.
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string file_name() const { return path_.filename().string(); }
  size_t file_size() const { return size_; }
  // Bytes copied out of the mapping to fix misaligned tensors (0 for files written by write_safetensors
  // with aligned tensor sizes).
  size_t copied_bytes() const { return copied_bytes_; }

  // In the order of their data offsets.
  const std::vector<SafetensorInfo>& tensors() const { return tensors_; }
  // nullptr when absent.
  const SafetensorInfo* find(std::string_view name) const;
  // Throws kNotFound "<file>: no tensor 'name'" when absent.
  const SafetensorInfo& at(std::string_view name) const;
  TensorView view(std::string_view name) const { return at(name).view(); }

 private:
  void unmap() noexcept;

  std::filesystem::path path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  std::vector<SafetensorInfo> tensors_;
  std::vector<HostBuffer> copies_;  // aligned copies of misaligned tensors
  size_t copied_bytes_ = 0;
  std::unordered_map<std::string, size_t> index_;  // name -> position in tensors_
};

// Writes contiguous host tensors, in the given order, to `path` (overwriting it). The header is padded
// with spaces so that the data section starts 8-byte aligned. Names must be unique and non-empty;
// "__metadata__" is reserved. Throws kInvalidArgument for bad tensors, kNotFound/kResource on I/O failure.
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, TensorView>>& tensors);

}  // namespace skv
