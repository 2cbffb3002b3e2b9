// WeightStore: single-file and sharded (index.json) safetensors model directories.
#include "loader/weight_store.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace skv {
namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

std::string dtype_list(const std::vector<DType>& dtypes) {
  std::string s;
  for (size_t i = 0; i < dtypes.size(); ++i) s += (i ? "/" : "") + std::string(dtype_name(dtypes[i]));
  return s;
}

}  // namespace

WeightStore::WeightStore(const std::filesystem::path& dir) : dir_(dir) {
  namespace fs = std::filesystem;
  const fs::path single = dir / kSingleFile;
  const fs::path index = dir / kIndexFile;
  std::error_code ec;

  // Same preference as Hugging Face: the single file first, then the index.
  if (fs::is_regular_file(single, ec)) {
    files_.push_back(std::make_unique<SafetensorsFile>(single));
    for (const SafetensorInfo& t : files_[0]->tensors()) by_name_.emplace(t.name, Entry{&t, 0});
    return;
  }
  if (!fs::is_regular_file(index, ec)) {
    throw Error(ErrorCode::kNotFound, dir.string() + ": no weights: neither " + kSingleFile + " nor " + kIndexFile +
                                          " is there");
  }

  const std::string index_name = index.string();
  nlohmann::json j;
  {
    std::ifstream in(index);
    if (!in) throw Error(ErrorCode::kNotFound, index_name + ": cannot open");
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw Error(ErrorCode::kParse, index_name + ": malformed JSON: " + e.what());
    }
  }
  auto wm = j.is_object() ? j.find("weight_map") : j.end();
  if (!j.is_object() || wm == j.end() || !wm->is_object() || wm->empty()) {
    throw Error(ErrorCode::kParse, index_name + ": expected a non-empty object 'weight_map' {tensor: shard file}");
  }

  // Open each distinct shard once, in sorted order (model-00001 first).
  std::map<std::string, size_t> shard_ids;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it->is_string()) {
      throw Error(ErrorCode::kParse, index_name + ": weight_map['" + it.key() + "'] must be a file name, found " +
                                         it->dump());
    }
    const std::string shard = it->get<std::string>();
    // Shards live next to the index: a path component would let the index point anywhere.
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
      throw Error(ErrorCode::kParse,
                  index_name + ": weight_map['" + it.key() + "'] is '" + shard + "', expected a file name in " +
                      dir.string());
    }
    shard_ids.emplace(shard, 0);
  }
  for (auto& [shard, id] : shard_ids) {
    const fs::path p = dir / shard;
    if (!fs::is_regular_file(p, ec)) {
      throw Error(ErrorCode::kNotFound, index_name + " lists shard '" + shard + "', which is missing from " +
                                            dir.string());
    }
    id = files_.size();
    files_.push_back(std::make_unique<SafetensorsFile>(p));
  }

  for (auto it = wm->begin(); it != wm->end(); ++it) {
    const std::string shard = it->get<std::string>();
    const size_t id = shard_ids.at(shard);
    const SafetensorInfo* t = files_[id]->find(it.key());
    if (!t) {
      std::string found;
      for (const auto& f : files_)
        if (f->find(it.key())) found = f->file_name();
      throw Error(ErrorCode::kParse, index_name + ": tensor '" + it.key() + "' should be in '" + shard +
                                         "' but is not there" +
                                         (found.empty() ? std::string() : " (it is in '" + found + "')"));
    }
    by_name_.emplace(it.key(), Entry{t, id});
  }
  // Tensors the index does not list stay reachable (the first shard holding one wins); HF would ignore them,
  // but they cannot change a listed tensor.
  for (size_t id = 0; id < files_.size(); ++id)
    for (const SafetensorInfo& t : files_[id]->tensors()) by_name_.emplace(t.name, Entry{&t, id});
}

std::string WeightStore::file_list() const {
  std::string s;
  for (size_t i = 0; i < files_.size(); ++i) s += (i ? ", " : "") + files_[i]->file_name();
  return s;
}

std::vector<std::string> WeightStore::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(by_name_.size());
  for (const auto& [name, e] : by_name_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

const SafetensorInfo* WeightStore::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : it->second.info;
}

std::string WeightStore::file_of(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? std::string() : files_[it->second.file]->file_name();
}

TensorView WeightStore::get(std::string_view name, const Shape& expected, const std::vector<DType>& allowed) const {
  auto it = by_name_.find(std::string(name));
  if (it == by_name_.end()) {
    throw Error(ErrorCode::kNotFound, "missing tensor '" + std::string(name) + "' (looked in: " + file_list() + ")");
  }
  const SafetensorInfo& t = *it->second.info;
  const bool dtype_ok = std::find(allowed.begin(), allowed.end(), t.dtype) != allowed.end();
  if (!(t.shape == expected) || !dtype_ok) {
    std::ostringstream os;
    os << files_[it->second.file]->file_name() << ": '" << t.name << "' is " << t.shape.str() << " "
       << dtype_name(t.dtype) << ", expected " << expected.str() << " " << dtype_list(allowed);
    throw Error(t.shape == expected ? ErrorCode::kUnsupported : ErrorCode::kInvalidArgument, os.str());
  }
  return t.view();
}

}  // namespace skv
