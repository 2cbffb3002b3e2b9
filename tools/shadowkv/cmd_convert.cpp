// shadowkv convert-llama2c: turn a llama2.c checkpoint + tokenizer.bin into a Hugging Face model directory.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cli_common.h"
#include "loader/llama2c.h"
#include "tokenizer/tokenizer.h"

namespace skv::cli {
namespace {

struct ConvertFlags {
  std::string checkpoint;
  std::string tokenizer;
  std::string out;
};

void run_convert(const ConvertFlags& f) {
  const std::filesystem::path out = f.out;
  const std::filesystem::path tmp = out.string() + ".tmp";
  std::filesystem::remove_all(tmp);
  std::filesystem::create_directories(tmp);
  convert_llama2c_checkpoint(f.checkpoint, tmp);
  convert_llama2c_tokenizer(f.tokenizer, tmp);
  // Publish atomically: a directory that exists is complete.
  std::filesystem::remove_all(out);
  std::filesystem::rename(tmp, out);
  std::fprintf(stderr, "wrote %s\n", out.string().c_str());
}

}  // namespace

void add_convert_command(CLI::App& app) {
  auto f = std::make_shared<ConvertFlags>();
  CLI::App* cmd = app.add_subcommand("convert-llama2c",
                                     "Convert a llama2.c checkpoint and tokenizer.bin to a Hugging Face directory");
  cmd->add_option("--checkpoint", f->checkpoint, "llama2.c checkpoint (e.g. stories15M.bin)")->required();
  cmd->add_option("--tokenizer", f->tokenizer, "llama2.c tokenizer.bin")->required();
  cmd->add_option("--out", f->out, "Output directory (replaced)")->required();
  cmd->callback([f] { run_convert(*f); });
}

}  // namespace skv::cli
