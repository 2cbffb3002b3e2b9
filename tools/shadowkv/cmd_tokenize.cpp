// shadowkv tokenize: print the token ids of a text.
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "tokenizer/tokenizer.h"

namespace skv::cli {
namespace {

struct TokenizeFlags {
  std::string model;
  std::string tokenizer;
  std::string text;
  std::string text_file;
  bool no_special = false;
  bool json = false;
};

void run_tokenize(const TokenizeFlags& f) {
  const std::filesystem::path path =
      f.tokenizer.empty() ? resolve_model_dir(f.model) / "tokenizer.json" : std::filesystem::path(f.tokenizer);
  const std::string text = f.text_file.empty() ? f.text : read_text_file(f.text_file);
  const Tokenizer tok = Tokenizer::load(path);
  const std::vector<int32_t> ids = tok.encode(text, !f.no_special);
  if (f.json) {
    nlohmann::json pieces = nlohmann::json::array();
    for (int32_t id : ids) pieces.push_back(tok.decode(std::span<const int32_t>(&id, 1)));
    nlohmann::json j{{"ids", ids}, {"pieces", pieces}, {"n_tokens", ids.size()}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
  std::printf("\n");
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto f = std::make_shared<TokenizeFlags>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text");
  auto* model = cmd->add_option("--model", f->model, "Model directory whose tokenizer.json to use (default: stories15M)");
  auto* tokenizer = cmd->add_option("--tokenizer", f->tokenizer, "A tokenizer.json file");
  model->excludes(tokenizer);
  tokenizer->excludes(model);
  auto* text = cmd->add_option("--text", f->text, "The text");
  auto* file = cmd->add_option("--text-file", f->text_file, "Read the text from this file");
  text->excludes(file);
  file->excludes(text);
  cmd->add_flag("--no-special", f->no_special, "Do not add BOS/EOS as the tokenizer's config asks");
  cmd->add_flag("--json", f->json, "Print {\"ids\": [...], \"pieces\": [...], \"n_tokens\": N}");
  cmd->callback([f] { run_tokenize(*f); });
}

}  // namespace skv::cli
