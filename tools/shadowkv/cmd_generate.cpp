// shadowkv generate: stream a completion of a prompt to stdout, timings to stderr (or one JSON object).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attention_flags.h"
#include "cli_common.h"
#include "device_flags.h"
#include "shadow_report.h"
#include "model/device_util.h"
#include "model/memory_plan.h"
#include "engine/engine.h"
#include "engine/stop_strings.h"
#include "kv/shadow_kv_cache.h"
#include "loader/model_loader.h"
#include "model/llama_model.h"
#include "tokenizer/tokenizer.h"

namespace skv::cli {
namespace {

struct GenerateFlags {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  std::string prompt_ids;  // a file of whitespace/comma-separated token ids, used as they are (no BOS added)
  int64_t max_tokens = -1;  // -1: up to 256, within the context limit
  float temperature = 0.0f;
  int64_t top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  int64_t context_limit = 0;  // 0: the model's max_position_embeddings
  std::vector<std::string> stop;
  AttentionFlags attention;
  bool report = false;
  bool json = false;
  std::string device = "cpu";
  std::string weight_dtype = "bf16";
  std::string kv_dtype;  // empty: the device's (bf16 on CUDA, f32 on the CPU)
};

constexpr int64_t kDefaultMaxTokens = 256;

// --prompt-ids FILE: token ids separated by whitespace and/or commas. Range-checked against the vocabulary later.
std::vector<int32_t> read_prompt_ids(const std::string& path) {
  std::string text = read_text_file(path);
  for (char& ch : text)
    if (ch == ',') ch = ' ';
  std::istringstream items(text);
  std::vector<int32_t> ids;
  std::string item;
  while (items >> item) {
    std::size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < 0 || v > INT32_MAX)
      throw Error(ErrorCode::kParse, "--prompt-ids " + path + ": '" + item + "' is not a token id (a non-negative integer)");
    ids.push_back(static_cast<int32_t>(v));
  }
  if (ids.empty()) throw Error(ErrorCode::kInvalidArgument, "--prompt-ids " + path + " holds no token ids");
  return ids;
}

void run_generate(const GenerateFlags& f) {
  // Validate every flag before loading anything.
  const DeviceId device = parse_device_flag(f.device);
  const DType weight_dtype = parse_weight_dtype_flag(f.weight_dtype);
  const DType kv_dtype = parse_kv_dtype_flag(f.kv_dtype, device);
  const auto dir = resolve_model_dir(f.model);
  SamplingParams sampling{f.temperature, f.top_k, f.top_p, f.seed};
  validate_sampling_params(sampling);
  if (f.max_tokens == 0 || f.max_tokens < -1)
    throw Error(ErrorCode::kInvalidArgument, "--max-tokens must be at least 1, got " + std::to_string(f.max_tokens));
  validate_context_limit_flag(f.context_limit);
  const AttentionOptions attention = attention_options(f.attention, f.report);
  if (f.report && attention.kind != AttentionKind::kShadowKv)
    throw Error(ErrorCode::kInvalidArgument, "--report measures ShadowKV against exact attention: add --attention shadowkv");
  if (device.kind == DeviceKind::kCuda && attention.kind != AttentionKind::kFull)
    throw Error(ErrorCode::kUnsupported, "--attention shadowkv runs on the CPU backend only for now");
  const bool by_ids = !f.prompt_ids.empty();
  // With --prompt-ids the tokenizer is optional: without tokenizer.json the output is token ids only, so --json
  // is required (its "text" is then omitted and "text_omitted" says why) and --stop cannot be matched.
  std::error_code ec;
  const bool have_tokenizer = !by_ids || std::filesystem::is_regular_file(dir / "tokenizer.json", ec);
  if (!have_tokenizer && !f.json)
    throw Error(ErrorCode::kInvalidArgument, "--prompt-ids: " + (dir / "tokenizer.json").string() +
                                                 " is missing, so there is no text to print: add --json (token ids only)");
  if (!have_tokenizer && !f.stop.empty())
    throw Error(ErrorCode::kInvalidArgument, "--stop needs " + (dir / "tokenizer.json").string() + ", which is missing");
  std::vector<int32_t> prompt_tokens;
  std::string prompt;
  if (by_ids) {
    prompt_tokens = read_prompt_ids(f.prompt_ids);
  } else {
    prompt = f.prompt_file.empty() ? f.prompt : read_text_file(f.prompt_file);
  }

  std::optional<Tokenizer> tokenizer;
  if (have_tokenizer) tokenizer.emplace(Tokenizer::load(dir / "tokenizer.json"));
  auto loaded = std::make_shared<const LoadedModel>(load_model(dir));
  const ModelConfig& c = loaded->config;

  if (by_ids) {
    for (int32_t t : prompt_tokens)
      if (t >= c.vocab_size)
        throw Error(ErrorCode::kInvalidArgument, "--prompt-ids " + f.prompt_ids + ": token id " + std::to_string(t) +
                                                     " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
  } else {
    prompt_tokens = tokenizer->encode(prompt, true);
    if (prompt_tokens.empty()) {
      // An empty prompt means BOS alone.
      const auto bos = tokenizer->bos_id();
      if (!bos) throw Error(ErrorCode::kInvalidArgument, "the prompt is empty and the tokenizer has no BOS token");
      prompt_tokens.push_back(*bos);
    }
  }
  const int64_t n_prompt = static_cast<int64_t>(prompt_tokens.size());
  const int64_t limit = effective_context_limit(c, f.context_limit);
  if (n_prompt >= limit)
    throw Error(ErrorCode::kResource, "the prompt has " + std::to_string(n_prompt) +
                                          " tokens, which leaves no room under the context limit of " +
                                          std::to_string(limit) + " tokens (raise it with --context-limit)");
  int64_t max_tokens = f.max_tokens;
  if (max_tokens == -1) {
    max_tokens = std::min(kDefaultMaxTokens, limit - n_prompt);
  } else if (max_tokens > limit - n_prompt) {  // not n_prompt + max_tokens: that can overflow
    throw Error(ErrorCode::kResource, "the prompt (" + std::to_string(n_prompt) + " tokens) plus --max-tokens " +
                                          std::to_string(max_tokens) + " exceeds the context limit of " +
                                          std::to_string(limit) + " tokens (lower --max-tokens or raise --context-limit)");
  }

  ModelOptions model_options;
  model_options.device = device;
  model_options.weight_dtype = weight_dtype;
  model_options.kv_dtype = kv_dtype;
  AttentionOptions cache_options = attention;
  if (device.kind == DeviceKind::kCuda) {
    // One sequence of prompt + max_tokens tokens: checked against free device memory before any allocation.
    MemoryPlanRequest req;
    req.context = n_prompt + max_tokens;
    req.batch = 1;
    req.weight_dtype = weight_dtype;
    req.kv_dtype = kv_dtype;
    req.prefill_chunk = default_prefill_chunk(device.kind);
    req.memory_bytes = device_memory_info(device.index).free_bytes;
    require_fits(plan_memory(c, req));
    cache_options.device = device;
    cache_options.max_sequences = 1;
    cache_options.max_tokens = n_prompt + max_tokens - 1;
    cache_options.kv_dtype = kv_dtype;
  }
  LlamaModel model(loaded, model_options);
  const std::unique_ptr<KvCache> cache = make_model_kv_cache(c, cache_options);
  Engine engine(model, *cache);
  GenerationRequest request;
  request.prompt = prompt_tokens;
  request.max_new_tokens = max_tokens;
  request.sampling = sampling;
  if (tokenizer) request.stop_token_ids = tokenizer->eos_ids();
  for (int32_t id : c.eos_token_ids)
    if (std::find(request.stop_token_ids.begin(), request.stop_token_ids.end(), id) == request.stop_token_ids.end())
      request.stop_token_ids.push_back(id);
  ProgressBar bar("prefill");
  const SeqId seq = engine.submit(request, [&bar](int64_t done, int64_t total) { bar.update(done, total); });

  std::optional<StreamingDecoder> decoder;
  if (tokenizer) decoder.emplace(*tokenizer, /*skip_special_tokens=*/true);
  StopStringMatcher stops(f.stop);
  std::vector<int32_t> generated;
  std::string text;
  std::string finish = "length";
  auto out = [&](const std::string& piece) {
    if (piece.empty()) return;
    text += piece;
    if (!f.json) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
  };
  while (engine.has_work()) {
    for (const TokenEvent& ev : engine.step()) {
      bar.finish();
      generated.push_back(ev.token);
      const bool is_stop_token = ev.finish == FinishReason::kStopToken;
      if (!is_stop_token && decoder) out(stops.push(decoder->push(ev.token)));
      if (stops.stopped()) {
        finish = "stop";
        engine.cancel(seq);
      } else if (ev.finish != FinishReason::kNone) {
        finish = finish_reason_name(ev.finish);
      }
    }
  }
  if (!stops.stopped() && decoder) out(stops.push(decoder->finish()) + stops.finish());

  const auto* shadow = dynamic_cast<const ShadowKvCache*>(cache.get());
  const EngineStats& st = engine.stats();
  const double prefill_tps = st.prefill_seconds > 0 ? static_cast<double>(st.prefill_tokens) / st.prefill_seconds : 0.0;
  const double decode_tps = st.decode_seconds > 0 ? static_cast<double>(st.decode_tokens) / st.decode_seconds : 0.0;
  if (f.json) {
    nlohmann::json j;
    j["prompt_tokens"] = prompt_tokens;
    j["tokens"] = generated;
    if (tokenizer)
      j["text"] = text;
    else
      j["text_omitted"] = "no tokenizer.json in the model directory: token ids only";
    j["finish_reason"] = finish;
    j["prefill_tokens_per_s"] = prefill_tps;
    j["decode_tokens_per_s"] = decode_tps;
    j["attention"] = attention_kind_name(attention.kind);
    j["device"] = device_name(device);
    if (shadow != nullptr && !shadow->notice().empty()) j["notice"] = shadow->notice();
    if (f.report && shadow != nullptr) j["report"] = report_json(shadow->report());
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("\n");
    std::fflush(stdout);  // the text ends before the timings line when both go to one terminal
    if (shadow != nullptr && !shadow->notice().empty()) std::fprintf(stderr, "notice: %s\n", shadow->notice().c_str());
    std::fprintf(stderr, "prefill: %lld tokens, %.1f tokens/s | decode: %lld tokens, %.1f tokens/s | finish: %s\n",
                 static_cast<long long>(st.prefill_tokens), prefill_tps, static_cast<long long>(generated.size()),
                 decode_tps, finish.c_str());
    if (f.report && shadow != nullptr)
      print_report(stderr, "ShadowKV report", shadow->report());
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate a completion of a prompt (streams text to stdout)");
  cmd->add_option("--model", f->model, "Model directory (config.json, *.safetensors, tokenizer.json); default: "
                                        "$SHADOWKV_MODEL or the bundled stories15M");
  auto* prompt = cmd->add_option("--prompt", f->prompt, "Prompt text (empty: BOS alone)");
  auto* prompt_file = cmd->add_option("--prompt-file", f->prompt_file, "Read the prompt from this file");
  auto* prompt_ids = cmd->add_option("--prompt-ids", f->prompt_ids,
                                     "Read the prompt as token ids (whitespace/comma-separated) from this file, "
                                     "used as they are (no BOS added); without tokenizer.json in the model "
                                     "directory it needs --json, whose \"text\" is then omitted");
  prompt->excludes(prompt_file);
  prompt_file->excludes(prompt);
  prompt_ids->excludes(prompt);
  prompt_ids->excludes(prompt_file);
  prompt->excludes(prompt_ids);
  prompt_file->excludes(prompt_ids);
  cmd->add_option("--max-tokens", f->max_tokens,
                  "Tokens to generate at most (default: 256, or what fits under the context limit)");
  cmd->add_option("--temperature", f->temperature, "Sampling temperature; 0 = greedy (default 0)");
  cmd->add_option("--top-k", f->top_k, "Sample among the k most likely tokens; 0 = all (default 0)");
  cmd->add_option("--top-p", f->top_p, "Nucleus sampling mass in (0, 1] (default 1)");
  cmd->add_option("--seed", f->seed, "Random seed for sampling (default 0)");
  cmd->add_option("--context-limit", f->context_limit,
                  "Maximum prompt + generated tokens (default: the model's max_position_embeddings; raising it "
                  "makes RoPE extrapolate)");
  cmd->add_option("--stop", f->stop, "Stop when this text is generated (repeatable); it is not printed");
  add_attention_flags(*cmd, f->attention);
  cmd->add_flag("--report", f->report,
                "With --attention shadowkv: per layer, the attention mass the selected chunks capture vs the best "
                "possible set, the output error against exact attention, and the chunk reuse rate (keeps an "
                "exact copy of K/V for the comparison)");
  cmd->add_flag("--json", f->json, "Print one JSON object with prompt_tokens, tokens, text and speeds");
  cmd->add_option("--device", f->device, "cpu, cuda or cuda:N (default cpu); CUDA runs full attention only");
  cmd->add_option("--weight-dtype", f->weight_dtype,
                  "CUDA: bf16 (tensor cores) or f32 (the CPU's numbers) for the matrices (default bf16)");
  cmd->add_option("--kv-dtype", f->kv_dtype, kKvDtypeHelp);
  cmd->callback([f] { run_generate(*f); });
}

}  // namespace skv::cli
