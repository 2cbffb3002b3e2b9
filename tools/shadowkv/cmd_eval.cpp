// shadowkv eval: RULER's synthetic long-context tasks, run with full attention and ShadowKV on exactly the same
// prompts, scored, and tabulated; or a needle-depth sweep rendered as a heatmap. See docs/eval.md.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "attention_flags.h"
#include "cli_common.h"
#include "device_flags.h"
#include "shadow_report.h"
#include "core/error.h"
#include "eval/chat_template.h"
#include "eval/harness.h"
#include "eval/haystack.h"
#include "eval/heatmap.h"
#include "eval/results.h"
#include "eval/tasks.h"
#include "loader/model_loader.h"
#include "tokenizer/tokenizer.h"

namespace skv::cli {
namespace {

using nlohmann::json;
namespace ev = skv::eval;

struct EvalFlags {
  std::string model;
  std::string tasks;          // empty: every available task (niah_single_2 for a sweep)
  std::string context;        // empty: 4k, or the model's context when smaller
  int64_t samples = 10;
  int64_t first_sample = 0;   // run and score samples first_sample..samples-1
  std::string methods = "full,shadowkv";
  AttentionFlags attention;   // the ShadowKV knobs (--attention itself is the list above)
  std::string haystack = std::string(ev::kDefaultHaystack);
  uint64_t seed = 42;         // RULER's default random_seed
  std::string chat_template = "auto";
  int64_t sweep_depth = 0;
  std::string heatmap = "eval-heatmap.png";
  std::string out = "eval-results.jsonl";
  bool json = false;
  int64_t context_limit = 0;
  std::string device = "cpu";
  std::string kv_dtype;      // empty: the device's (CPU f32, CUDA bf16)
  std::string weight_dtype = "bf16";  // CUDA only
  bool list_tasks = false;
  bool report = false;
};


void list_tasks(bool as_json) {
  json j = json::array();
  for (const ev::TaskInfo& t : ev::all_tasks()) {
    if (as_json) {
      j.push_back({{"name", t.name}, {"available", t.available}, {"unavailable_reason", t.unavailable_reason},
                   {"metric", ev::metric_name(t.metric)},
                   {"max_new_tokens", t.max_new_tokens}, {"uses_haystack", t.uses_haystack},
                   {"description", t.description}});
      continue;
    }
    std::printf("%-16s %-11s %4lld tokens  %-17s %s%s%s\n", std::string(t.name).c_str(),
                t.available ? "available" : "unavailable", static_cast<long long>(t.max_new_tokens),
                ev::metric_name(t.metric), std::string(t.description).c_str(), t.available ? "" : ": ",
                std::string(t.unavailable_reason).c_str());
  }
  if (as_json) std::printf("%s\n", j.dump().c_str());
}

std::vector<AttentionKind> parse_methods(const std::string& list) {
  std::vector<AttentionKind> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    const AttentionKind k = parse_attention_kind(list.substr(start, comma - start));
    if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
    start = comma + 1;
  }
  return out;
}

std::string unavailable_tasks() {
  std::string s;
  for (const ev::TaskInfo& t : ev::all_tasks())
    if (!t.available) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

std::string score_text(const ev::Cell& c) {
  if (c.samples == 0) return "-";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.1f (%lld)", c.score, static_cast<long long>(c.samples));
  return buf;
}

// task x context rows, one column per method: "score (samples)"; then averages.
void print_table(const ev::EvalPlan& plan, const ev::Summary& sum) {
  std::vector<std::string> methods;
  for (AttentionKind m : plan.methods) methods.emplace_back(attention_kind_name(m));
  size_t task_w = 7;
  for (const auto& t : plan.tasks) task_w = std::max(task_w, t.size());
  const int col_w = 16;
  std::printf("%-*s %8s", static_cast<int>(task_w), "task", "context");
  for (const auto& m : methods) std::printf("  %*s", col_w, m.c_str());
  std::printf("\n");
  std::map<std::pair<std::string, int64_t>, std::map<std::string, const ev::Cell*>> rows;
  for (const ev::Cell& c : sum.cells) rows[{c.task, c.context}][c.method] = &c;
  // Averages per context (each task weighs the same) when there are several contexts.
  std::map<int64_t, std::map<std::string, std::pair<double, int64_t>>> per_context;  // score sum, cells
  std::map<int64_t, std::map<std::string, int64_t>> per_context_samples;
  for (int64_t context : plan.contexts) {
    for (const std::string& task : plan.tasks) {
      std::printf("%-*s %8s", static_cast<int>(task_w), task.c_str(), ev::format_context_length(context).c_str());
      for (const auto& m : methods) {
        const ev::Cell* c = rows[{task, context}][m];
        std::printf("  %*s", col_w, c ? score_text(*c).c_str() : "-");
        if (c && c->samples) {
          per_context[context][m].first += c->score;
          ++per_context[context][m].second;
          per_context_samples[context][m] += c->samples;
        }
      }
      std::printf("\n");
    }
  }
  auto avg = [&](const std::string& label, const std::string& ctx, auto get) {
    std::printf("%-*s %8s", static_cast<int>(task_w), label.c_str(), ctx.c_str());
    for (const auto& m : methods) {
      const auto [score, cells, samples] = get(m);
      char buf[48] = "-";
      if (cells > 0) std::snprintf(buf, sizeof buf, "%.1f (%lld)", score, static_cast<long long>(samples));
      std::printf("  %*s", col_w, buf);
    }
    std::printf("\n");
  };
  if (plan.contexts.size() > 1)
    for (int64_t context : plan.contexts)
      avg("average", ev::format_context_length(context), [&](const std::string& m) {
        const auto& [s, n] = per_context[context][m];
        return std::tuple<double, int64_t, int64_t>{n ? s / static_cast<double>(n) : 0.0, n,
                                                    per_context_samples[context][m]};
      });
  avg("average", "all", [&](const std::string& m) {
    const auto it = sum.average.find(m);
    if (it == sum.average.end()) return std::tuple<double, int64_t, int64_t>{0.0, 0, 0};
    return std::tuple<double, int64_t, int64_t>{it->second.score, it->second.cells, it->second.samples};
  });
  std::printf("scores: RULER's string_match_all x 100, mean over samples (count in parentheses); averages weigh "
              "every task x context the same\n");
}

void print_sweep(const ev::EvalPlan& plan, const ev::Summary& sum) {
  for (const std::string& task : plan.tasks)
    for (AttentionKind m : plan.methods) {
      std::printf("%s, %s: accuracy by needle depth (rows) and context (columns), %lld sample(s) a cell\n",
                  task.c_str(), attention_kind_name(m), static_cast<long long>(plan.sample_count()));
      std::printf("%6s", "depth");
      for (int64_t c : plan.contexts) std::printf(" %7s", ev::format_context_length(c).c_str());
      std::printf("\n");
      for (double d : plan.depths) {
        std::printf("%5.0f%%", d * 100.0);
        for (int64_t c : plan.contexts) {
          const ev::Cell* cell = nullptr;
          for (const ev::Cell& x : sum.cells)
            if (x.task == task && x.context == c && x.method == attention_kind_name(m) && x.depth &&
                std::abs(*x.depth - d) < 1e-9)
              cell = &x;
          if (cell && cell->samples) std::printf(" %7.1f", cell->score);
          else std::printf(" %7s", "-");
        }
        std::printf("\n");
      }
    }
}

void run_eval(const EvalFlags& f) {
  if (f.list_tasks) {
    list_tasks(f.json);
    return;
  }
  // Validate every flag before loading anything.
  const DeviceId device = parse_device_flag(f.device);
  const DType kv_dtype = parse_kv_dtype_flag(f.kv_dtype, device);  // the CPU's cache is f32; bf16 is CUDA-only
  const DType weight_dtype = parse_weight_dtype_flag(f.weight_dtype);
  const bool sweep = f.sweep_depth != 0;
  if (sweep && (f.sweep_depth < 2 || f.sweep_depth > 101))
    throw Error(ErrorCode::kInvalidArgument,
                "--sweep-depth must be in [2, 101] (depths from 0% to 100%), got " + std::to_string(f.sweep_depth));
  ev::EvalPlan plan;
  plan.tasks = ev::parse_task_list(f.tasks.empty() ? (sweep ? "niah_single_2" : "all") : f.tasks);
  if (sweep)
    for (const std::string& t : plan.tasks)
      if (!ev::find_task(t).single_needle)
        throw Error(ErrorCode::kInvalidArgument, "--sweep-depth places one needle at each depth: task " + t +
                                                     " is not a single-needle task (use niah_single_1, "
                                                     "niah_single_2 or niah_single_3)");
  if (f.samples < 1 || f.samples > 1000000)
    throw Error(ErrorCode::kInvalidArgument, "--samples must be in [1, 1000000], got " + std::to_string(f.samples));
  plan.samples = f.samples;
  if (f.first_sample < 0 || f.first_sample >= f.samples)
    throw Error(ErrorCode::kInvalidArgument, "--first-sample must be in [0, --samples - 1] = [0, " +
                                                 std::to_string(f.samples - 1) + "], got " +
                                                 std::to_string(f.first_sample));
  plan.first_sample = f.first_sample;
  plan.methods = parse_methods(f.methods);
  const bool with_shadow =
      std::find(plan.methods.begin(), plan.methods.end(), AttentionKind::kShadowKv) != plan.methods.end();
  if (with_shadow && device.kind == DeviceKind::kCuda)
    throw Error(ErrorCode::kUnsupported, "--attention shadowkv runs on the CPU backend only for now: with --device " +
                                             f.device + " pass --attention full");
  if (f.report && !with_shadow)
    throw Error(ErrorCode::kInvalidArgument, "--report measures ShadowKV against exact attention: add shadowkv to --attention");
  const AttentionOptions shadow_options = attention_options(f.attention, AttentionKind::kShadowKv, false);
  if (sweep)
    for (int64_t i = 0; i < f.sweep_depth; ++i)
      plan.depths.push_back(static_cast<double>(i) / static_cast<double>(f.sweep_depth - 1));
  validate_context_limit_flag(f.context_limit);
  std::vector<int64_t> contexts;
  if (!f.context.empty()) contexts = ev::parse_context_list(f.context);
  const ev::ChatTemplate forced =
      f.chat_template == "auto" ? ev::ChatTemplate::kNone : ev::parse_chat_template(f.chat_template);

  const auto dir = resolve_model_dir(f.model);
  const Tokenizer tokenizer = Tokenizer::load(dir / "tokenizer.json");
  auto loaded = std::make_shared<const LoadedModel>(load_model(dir));
  const ModelConfig& c = loaded->config;
  const int64_t limit = effective_context_limit(c, f.context_limit);
  if (contexts.empty()) contexts = {std::min<int64_t>(4096, limit)};
  for (int64_t ctx : contexts)
    if (ctx > limit)
      throw Error(ErrorCode::kResource, "--context " + std::to_string(ctx) + " exceeds the context limit of " +
                                            std::to_string(limit) + " tokens" +
                                            (f.context_limit > 0 ? std::string(" (--context-limit)")
                                                                 : " (the model's max_position_embeddings; raise it "
                                                                   "with --context-limit)"));
  plan.contexts = contexts;

  const ev::PromptFormat format = f.chat_template == "auto" ? ev::detect_prompt_format(dir, tokenizer)
                                                           : ev::make_prompt_format(forced, tokenizer, true);
  std::shared_ptr<const ev::Haystack> haystack;
  for (const std::string& t : plan.tasks)
    if (ev::find_task(t).uses_haystack && !haystack)
      haystack = std::make_shared<const ev::Haystack>(ev::load_haystack(f.haystack));
  const ev::SampleGenerator generator(tokenizer, format, haystack, f.seed);
  for (int64_t ctx : plan.contexts)
    for (const std::string& t : plan.tasks) generator.check_fits(t, ctx);  // fail before any run

  // What the results depend on; null: not known by this run (filled in by a later one).
  json settings = json::object();
  settings["generator"] = ev::kGeneratorVersion;
  std::error_code ec;
  const auto canonical = std::filesystem::weakly_canonical(dir, ec);
  settings["model"] = (ec ? dir : canonical).string();
  settings["seed"] = f.seed;
  settings["chat-template"] = ev::chat_template_name(format.kind);
  std::string haystack_name = f.haystack;
  if (haystack && f.haystack != "kjv" && f.haystack != "jargon") {
    const auto p = std::filesystem::weakly_canonical(f.haystack, ec);
    if (!ec) haystack_name = p.string();
  }
  settings["haystack"] = haystack ? json(haystack_name) : json(nullptr);
  settings["haystack-text"] = haystack ? json(ev::hash_hex(haystack->hash)) : json(nullptr);
  if (device.kind == DeviceKind::kCuda) {  // CPU runs keep the settings files written before --device cuda existed
    settings["device"] = "cuda";
    settings["weight-dtype"] = dtype_name(weight_dtype);
    settings["kv-dtype"] = dtype_name(kv_dtype);
  }
  for (const char* k : {"sparse-budget", "rank", "chunk-size", "outlier-chunks", "local-chunks"})
    settings[k] = nullptr;
  if (with_shadow) {
    const ShadowParams& p = shadow_options.shadow;
    settings["sparse-budget"] = p.sparse_budget;
    settings["rank"] = p.rank;
    settings["chunk-size"] = p.chunk_size;
    settings["outlier-chunks"] = p.resolved_outlier_chunks();
    settings["local-chunks"] = p.local_chunks;
    // Only when given: results files written before the flag existed keep matching.
    if (!p.dense_layers.empty()) settings["dense-layers"] = p.dense_layers;
    if (p.dense_capture > 0.0) {
      settings["dense-capture"] = p.dense_capture;
      settings["dense-capture-steps"] = p.dense_capture_steps;
    }
    if (p.oracle_selection) settings["selection"] = "oracle";
  }
  ev::ResultsFile results = ev::ResultsFile::open(f.out, settings);

  ev::EvalEnv env;
  env.model = loaded;
  env.tokenizer = &tokenizer;
  env.generator = &generator;
  env.stop_ids = tokenizer.eos_ids();
  for (int32_t id : c.eos_token_ids)
    if (std::find(env.stop_ids.begin(), env.stop_ids.end(), id) == env.stop_ids.end()) env.stop_ids.push_back(id);
  env.shadow = shadow_options.shadow;
  env.device = device;
  env.weight_dtype = weight_dtype;
  env.kv_dtype = kv_dtype;
  env.report = f.report;

  const int64_t n_runs = static_cast<int64_t>(plan.tasks.size() * plan.contexts.size() *
                                              std::max<size_t>(1, plan.depths.size()) * plan.methods.size()) *
                         plan.sample_count();
  std::fprintf(stderr, "eval: %lld runs (%zu task(s) x %zu context(s)%s x %lld sample(s) x %zu method(s)); %s; "
               "results in %s\n",
               static_cast<long long>(n_runs), plan.tasks.size(), plan.contexts.size(),
               sweep ? (" x " + std::to_string(plan.depths.size()) + " depths").c_str() : "",
               static_cast<long long>(plan.sample_count()), plan.methods.size(),
               (f.chat_template == "auto" && !format.note.empty()
                    ? format.note
                    : std::string("chat template ") + ev::chat_template_name(format.kind))
                   .c_str(),
               f.out.c_str());
  ProgressBar bar("eval");
  const ev::RunStats stats =
      ev::run_plan(plan, env, results, [&bar](int64_t done, int64_t total) { bar.update(done, total); });
  bar.finish();
  if (stats.resumed > 0)
    std::fprintf(stderr, "resumed: %lld of %lld runs were already in %s; ran %lld\n",
                 static_cast<long long>(stats.resumed), static_cast<long long>(n_runs), f.out.c_str(),
                 static_cast<long long>(stats.ran));
  if (!stats.notice.empty()) std::fprintf(stderr, "notice: %s\n", stats.notice.c_str());

  const ev::Summary sum = ev::summarize(plan, results);
  if (sweep) {
    const std::string title = "NEEDLE DEPTH SWEEP: " + dir.filename().string();
    ev::write_png(f.heatmap, ev::render_heatmap(ev::sweep_heatmap(plan, sum, title)));
  }
  if (f.json) {
    json j;
    j["results_file"] = f.out;
    j["settings"] = results.settings();
    j["runs"] = n_runs;
    j["resumed"] = stats.resumed;
    j["ran"] = stats.ran;
    j["cells"] = json::array();
    for (const ev::Cell& cell : sum.cells)
      j["cells"].push_back({{"task", cell.task}, {"context", cell.context},
                            {"depth", cell.depth ? json(*cell.depth) : json(nullptr)}, {"method", cell.method},
                            {"samples", cell.samples}, {"score", cell.samples ? json(cell.score) : json(nullptr)}});
    j["average"] = json::object();
    for (const auto& [m, a] : sum.average)
      j["average"][m] = {{"score", a.score}, {"cells", a.cells}, {"samples", a.samples}};
    j["unavailable_tasks"] = json::array();
    for (const ev::TaskInfo& t : ev::all_tasks())
      if (!t.available) j["unavailable_tasks"].push_back(t.name);
    if (sweep) j["heatmap"] = f.heatmap;
    if (!stats.notice.empty()) j["notice"] = stats.notice;
    if (f.report) {
      j["report"] = json::array();
      for (const auto& [key, rep] : stats.reports)
        j["report"].push_back({{"task", key.task}, {"context", key.context}, {"runs", rep.runs},
                               {"layers", report_json(rep.layers)}});
    }
    std::printf("%s\n", j.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    return;
  }
  if (sweep) {
    print_sweep(plan, sum);
    std::printf("heatmap: %s\n", f.heatmap.c_str());
  } else {
    print_table(plan, sum);
    std::printf("unavailable (not run): %s (RULER's QA tasks need the SQuAD and HotpotQA datasets)\n",
                unavailable_tasks().c_str());
  }
  if (f.report) {
    if (stats.reports.empty())
      std::printf("report: no ShadowKV run was made now (runs resumed from %s are not measured)\n", f.out.c_str());
    for (const auto& [key, rep] : stats.reports)
      print_report(stdout,
                   "ShadowKV report: " + key.task + " at " + ev::format_context_length(key.context) + " (" +
                       std::to_string(rep.runs) + " run(s) made now)",
                   rep.layers);
  }
  std::printf("results: %s\n", f.out.c_str());
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto f = std::make_shared<EvalFlags>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Accuracy on RULER's synthetic long-context tasks, full attention vs ShadowKV on the same prompts");
  cmd->footer(
      "Each (task, context, sample) prompt is generated from --seed and built to exactly context - budget tokens "
      "with the model's tokenizer; every method runs the same tokens, greedy. Results are appended to --out (JSON "
      "Lines) as they finish: rerunning the same command resumes, and more --samples, tasks or contexts extend "
      "the file; other settings (model, seed, haystack, ShadowKV knobs) are refused. See docs/eval.md.");
  cmd->add_option("--model", f->model, "Model directory (default: $SHADOWKV_MODEL or the bundled stories15M)");
  cmd->add_option("--tasks", f->tasks,
                  "Comma-separated tasks, or all (default: all available; niah_single_2 with --sweep-depth). "
                  "--list-tasks shows them");
  cmd->add_option("--context", f->context,
                  "Comma-separated context lengths in tokens: 4096, 4k, 128k (default: 4k, or the model's context "
                  "when smaller)");
  cmd->add_option("--samples", f->samples, "Samples per task and context (per depth in a sweep) (default 10)");
  cmd->add_option("--first-sample", f->first_sample,
                  "Run and score only samples N..--samples-1 (their prompts are those of a run from 0): to look "
                  "at one prompt again, e.g. --first-sample 5 --samples 6 for sample 5 alone (default 0)");
  cmd->add_option("--attention", f->methods, "Comma-separated attention methods to compare (default full,shadowkv)");
  add_attention_flags(*cmd, f->attention, /*with_policy=*/false);
  cmd->add_option("--haystack", f->haystack,
                  "Essay haystack (niah_single_2/3, multikey_1, multivalue, multiquery; cwe's word pool): kjv (the "
                  "King James Bible, default), jargon (the Jargon File), or a text file (or JSON {\"text\": ...})");
  cmd->add_option("--seed", f->seed, "Seed of the sample generator (default 42)");
  cmd->add_option("--chat-template", f->chat_template,
                  "Prompt format: auto (from tokenizer_config.json), none (raw text), llama3, chatml, mistral "
                  "(default auto)");
  cmd->add_option("--sweep-depth", f->sweep_depth,
                  "Needle-depth sweep: N depths from 0% to 100% for each context, single-needle tasks only; writes "
                  "--heatmap");
  cmd->add_option("--heatmap", f->heatmap, "PNG of the sweep's accuracy grid (default eval-heatmap.png)");
  cmd->add_option("--out", f->out, "Results file, one JSON line per run, appended (default eval-results.jsonl)");
  cmd->add_flag("--json", f->json, "Print the summary (cells, averages) as one JSON object instead of the table");
  cmd->add_option("--context-limit", f->context_limit,
                  "Allow contexts up to this many tokens (default: the model's max_position_embeddings; raising it "
                  "makes RoPE extrapolate)");
  cmd->add_option("--device", f->device, "cpu or cuda[:N] (default cpu); CUDA runs full attention only");
  cmd->add_option("--weight-dtype", f->weight_dtype, "CUDA: bf16 (default) or f32 (with --kv-dtype f32, the CPU's numbers)");
  cmd->add_option("--kv-dtype", f->kv_dtype, kKvDtypeHelp);
  cmd->add_flag("--report", f->report,
                "ShadowKV diagnostics per task and context: per layer, the exact attention mass the selected keys "
                "captured vs a perfect chunk selector and the best keys of the same budget, how often the top key "
                "was attended, the output error (slower: every step is also computed exactly; see docs/shadowkv.md)");
  cmd->add_flag("--list-tasks", f->list_tasks, "List the tasks, their budgets and metrics, and exit");
  cmd->callback([f] { run_eval(*f); });
}

}  // namespace skv::cli
