// The results file of an evaluation: JSON Lines, appended as each run finishes, so an interrupted evaluation
// loses at most the run in progress and a rerun with the same arguments resumes where it stopped.
//
//   {"type":"settings", "generator":..., "model":..., "seed":..., "sparse-budget":..., ...}   what results depend on
//   {"type":"result", "task":..., "context":..., "depth":..., "sample":..., "method":..., "prompt_hash":...,
//    "prompt_tokens":..., "answers":[...], "output":"...", "score":..., "finish":"stop|length",
//    "generated_tokens":..., "seconds":...}
//
// A file written under other settings is refused with an error naming the first setting that differs; a settings
// value may be null (not known yet, e.g. the haystack's hash when no task read it) and is then filled in by a
// later run. A torn last line (the process was killed mid-write) is dropped.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace skv::eval {

struct ResultRecord {
  std::string task;
  int64_t context = 0;
  std::optional<double> depth;  // sweeps: the requested needle depth in [0, 1]
  int64_t sample = 0;
  std::string method;           // "full", "shadowkv"
  std::string prompt_hash;      // hash_hex(Sample::prompt_hash)
  int64_t prompt_tokens = 0;
  std::vector<std::string> answers;
  std::string output;           // the generated text (special tokens skipped)
  double score = 0.0;           // in [0, 1]
  std::string finish;           // "stop" (EOS) or "length" (the budget)
  int64_t generated_tokens = 0;
  double seconds = 0.0;

  std::string key() const;
  nlohmann::json to_json() const;
  static ResultRecord from_json(const nlohmann::json& j);  // throws nlohmann exceptions on a bad record
};

// The identity of one run: task|context|depth|sample|method.
std::string record_key(const std::string& task, int64_t context, std::optional<double> depth, int64_t sample,
                       const std::string& method);

class ResultsFile {
 public:
  // Opens or creates `path` for an evaluation under `settings` (a flat JSON object of scalars). Throws
  // Error(kInvalidArgument) when the file holds results of other settings, Error(kParse) for a corrupt line.
  static ResultsFile open(const std::filesystem::path& path, const nlohmann::json& settings);

  const ResultRecord* find(const std::string& key) const;
  // Writes one line and flushes it.
  void append(const ResultRecord& record);
  const std::map<std::string, ResultRecord>& records() const { return records_; }
  const nlohmann::json& settings() const { return settings_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void write_line(const nlohmann::json& j);

  std::filesystem::path path_;
  nlohmann::json settings_;
  std::map<std::string, ResultRecord> records_;
  std::ofstream out_;
};

}  // namespace skv::eval
