// WeightStore: the safetensors files of one model directory (model.safetensors, or the shards listed by
// model.safetensors.index.json), mapped read-only, with checked lookups by tensor name.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "loader/safetensors.h"

namespace skv {

// The dtypes a weight may be stored in.
inline const std::vector<DType> kFloatWeightDTypes = {DType::kF32, DType::kF16, DType::kBF16};

class WeightStore {
 public:
  // Opens `dir`/model.safetensors when present, else the shards of `dir`/model.safetensors.index.json.
  // Throws kNotFound when neither exists or a listed shard is missing, kParse when the index is malformed
  // or a tensor is not in the shard the index names.
  explicit WeightStore(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  // "model.safetensors" or "model-00001-of-00002.safetensors, model-00002-of-00002.safetensors".
  std::string file_list() const;
  size_t tensor_count() const { return by_name_.size(); }
  std::vector<std::string> tensor_names() const;  // sorted

  // nullptr when absent.
  const SafetensorInfo* find(std::string_view name) const;
  // The file holding `name` (its file name only), or "" when absent.
  std::string file_of(std::string_view name) const;

  // The tensor, checked: throws kNotFound "missing tensor 'X' (looked in: files)", kInvalidArgument when the
  // shape differs and kUnsupported when the dtype is not allowed, naming the file, actual and expected.
  TensorView get(std::string_view name, const Shape& expected,
                 const std::vector<DType>& allowed = kFloatWeightDTypes) const;

 private:
  struct Entry {
    const SafetensorInfo* info;
    size_t file;  // index into files_
  };
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;  // unique_ptr: Entry::info must not move
  std::unordered_map<std::string, Entry> by_name_;
};

}  // namespace skv
