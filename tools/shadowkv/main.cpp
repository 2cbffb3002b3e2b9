// shadowkv: the command-line program. Thin over the library: flags, printing, exit codes.
// Exit codes: 0 ok, 1 error (one line "error: ..." on stderr), 2 usage.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "cli_common.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"shadowkv: long-context LLM inference (ShadowKV, arXiv 2410.21465) on Hugging Face Llama-family models",
               "shadowkv"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "shadowkv 0.1.0");
  skv::cli::add_generate_command(app);
  skv::cli::add_tokenize_command(app);
  skv::cli::add_info_command(app);
  skv::cli::add_convert_command(app);
  skv::cli::add_eval_command(app);
  skv::cli::add_plan_command(app);
  skv::cli::add_bench_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const skv::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
