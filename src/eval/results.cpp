// The JSON Lines results file: resume and settings checks.
#include "eval/results.h"

#include <cstdio>
#include <sstream>

#include "core/error.h"

namespace skv::eval {
namespace {

using nlohmann::json;

std::string describe(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

// Settings that are flags of `shadowkv eval` are named as flags in messages.
std::string setting_name(const std::string& key) {
  static const char* kFlags[] = {"model",      "seed", "chat-template",  "haystack",     "sparse-budget",
                                 "rank",       "chunk-size", "outlier-chunks", "local-chunks"};
  for (const char* f : kFlags)
    if (key == f) return "--" + key;
  return key;
}

}  // namespace

std::string record_key(const std::string& task, int64_t context, std::optional<double> depth, int64_t sample,
                       const std::string& method) {
  char d[32] = "-";
  if (depth) std::snprintf(d, sizeof d, "%.4f", *depth);
  return task + "|" + std::to_string(context) + "|" + d + "|" + std::to_string(sample) + "|" + method;
}

std::string ResultRecord::key() const { return record_key(task, context, depth, sample, method); }

json ResultRecord::to_json() const {
  json j;
  j["type"] = "result";
  j["task"] = task;
  j["context"] = context;
  j["depth"] = depth ? json(*depth) : json(nullptr);
  j["sample"] = sample;
  j["method"] = method;
  j["prompt_hash"] = prompt_hash;
  j["prompt_tokens"] = prompt_tokens;
  j["answers"] = answers;
  j["output"] = output;
  j["score"] = score;
  j["finish"] = finish;
  j["generated_tokens"] = generated_tokens;
  j["seconds"] = seconds;
  return j;
}

ResultRecord ResultRecord::from_json(const json& j) {
  ResultRecord r;
  r.task = j.at("task").get<std::string>();
  r.context = j.at("context").get<int64_t>();
  if (j.contains("depth") && !j["depth"].is_null()) r.depth = j["depth"].get<double>();
  r.sample = j.at("sample").get<int64_t>();
  r.method = j.at("method").get<std::string>();
  r.prompt_hash = j.at("prompt_hash").get<std::string>();
  r.prompt_tokens = j.value("prompt_tokens", int64_t{0});
  r.answers = j.value("answers", std::vector<std::string>{});
  r.output = j.value("output", std::string());
  r.score = j.at("score").get<double>();
  r.finish = j.value("finish", std::string());
  r.generated_tokens = j.value("generated_tokens", int64_t{0});
  r.seconds = j.value("seconds", 0.0);
  return r;
}

ResultsFile ResultsFile::open(const std::filesystem::path& path, const json& settings) {
  ResultsFile f;
  f.path_ = path;
  json file_settings = json::object();
  bool has_settings = false;
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    if (std::filesystem::is_directory(path, ec))
      throw Error(ErrorCode::kInvalidArgument, path.string() + " is a directory, expected a results file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorCode::kNotFound, "cannot read results file " + path.string());
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string content = ss.str();
    size_t pos = 0, line_no = 0, good_end = 0;
    while (pos < content.size()) {
      size_t nl = content.find('\n', pos);
      const bool complete = nl != std::string::npos;
      if (!complete) nl = content.size();
      const std::string line = content.substr(pos, nl - pos);
      ++line_no;
      const size_t next = complete ? nl + 1 : nl;
      if (line.find_first_not_of(" \t\r") == std::string::npos) {
        pos = next;
        if (complete) good_end = next;
        continue;
      }
      json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) {
        if (!complete) break;  // torn last line: dropped below
        throw Error(ErrorCode::kParse, path.string() + " line " + std::to_string(line_no) +
                                           " is not a JSON object (not a shadowkv eval results file?)");
      }
      const std::string type = j.value("type", "");
      if (type == "settings") {
        has_settings = true;
        for (auto it = j.begin(); it != j.end(); ++it)
          if (it.key() != "type" && !it.value().is_null()) file_settings[it.key()] = it.value();
      } else if (type == "result") {
        try {
          ResultRecord r = ResultRecord::from_json(j);
          f.records_[r.key()] = std::move(r);
        } catch (const json::exception& e) {
          throw Error(ErrorCode::kParse,
                      path.string() + " line " + std::to_string(line_no) + " is not a valid result: " + e.what());
        }
      } else {
        throw Error(ErrorCode::kParse, path.string() + " line " + std::to_string(line_no) +
                                           " has no known \"type\" (not a shadowkv eval results file?)");
      }
      pos = next;
      good_end = next;
    }
    if (!has_settings && !f.records_.empty())
      throw Error(ErrorCode::kParse, path.string() + " has results but no settings line");
    if (good_end < content.size()) {
      // A torn last line: keep everything before it.
      std::filesystem::resize_file(path, good_end, ec);
      if (ec) throw Error(ErrorCode::kResource, "cannot truncate " + path.string() + ": " + ec.message());
    }
  }
  // Compare the settings both sides know; name every one that differs.
  bool adds = !has_settings;
  std::string there_list, here_list;
  for (auto it = settings.begin(); it != settings.end(); ++it) {
    if (it.value().is_null()) continue;
    if (!file_settings.contains(it.key())) {
      adds = true;
      continue;
    }
    const json& there = file_settings[it.key()];
    if (there != it.value()) {
      const std::string name = setting_name(it.key());
      there_list += (there_list.empty() ? "" : ", ") + name + " " + describe(there);
      here_list += (here_list.empty() ? "" : ", ") + name + " " + describe(it.value());
    }
  }
  if (!there_list.empty())
    throw Error(ErrorCode::kInvalidArgument, path.string() + " holds results made with " + there_list +
                                                 "; this run has " + here_list +
                                                 " (rerun with the same settings or pass another --out)");
  for (auto it = settings.begin(); it != settings.end(); ++it)
    if (!it.value().is_null()) file_settings[it.key()] = it.value();
  f.settings_ = file_settings;
  f.out_.open(path, std::ios::binary | std::ios::app);
  if (!f.out_) throw Error(ErrorCode::kNotFound, "cannot write results file " + path.string());
  if (adds) {
    json line = json::object();
    line["type"] = "settings";
    for (auto it = file_settings.begin(); it != file_settings.end(); ++it) line[it.key()] = it.value();
    f.write_line(line);
  }
  return f;
}

const ResultRecord* ResultsFile::find(const std::string& key) const {
  const auto it = records_.find(key);
  return it == records_.end() ? nullptr : &it->second;
}

void ResultsFile::append(const ResultRecord& record) {
  write_line(record.to_json());
  records_[record.key()] = record;
}

void ResultsFile::write_line(const json& j) {
  out_ << j.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
  out_.flush();
  if (!out_) throw Error(ErrorCode::kResource, "cannot write to results file " + path_.string());
}

}  // namespace skv::eval
