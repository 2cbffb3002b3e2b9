// The evaluation loop: for each (context, task, depth, sample) of a plan the prompt is generated and tokenized
// once, then every attention method runs exactly those tokens, each with its own KvCache (make_kv_cache), greedy,
// until EOS or the task's budget. Each run is scored and appended to the results file as soon as it finishes;
// runs already in the file are skipped (resume).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eval/results.h"
#include "eval/tasks.h"
#include "kv/shadow_kv_cache.h"
#include "kv/shadow_kv_factory.h"
#include "loader/model_loader.h"
#include "tokenizer/tokenizer.h"

namespace skv::eval {

struct EvalPlan {
  std::vector<std::string> tasks;
  std::vector<int64_t> contexts;             // ascending
  int64_t samples = 1;                       // per (task, context[, depth])
  // The first sample index run and scored (samples first_sample..samples-1): one prompt again without the ones
  // before it. Each sample's prompt depends on its index alone, so these are the prompts of a run from 0.
  int64_t first_sample = 0;
  std::vector<AttentionKind> methods;
  std::vector<double> depths;                // a depth sweep: needle depths in [0, 1]; empty: RULER's random depths

  // Samples run and scored per (task, context[, depth]).
  int64_t sample_count() const { return samples - first_sample; }
};

struct EvalEnv {
  std::shared_ptr<const LoadedModel> model;
  const Tokenizer* tokenizer = nullptr;
  const SampleGenerator* generator = nullptr;
  std::vector<int32_t> stop_ids;             // EOS ids
  ShadowParams shadow;
  // Where the model runs. CUDA: full attention only (a CudaFullKvCache per run, sized for the prompt and answer),
  // weights and K/V in these dtypes.
  DeviceId device{};
  DType weight_dtype = DType::kBF16;
  DType kv_dtype = DType::kBF16;
  // ShadowKV runs measure their attention against exact attention (ShadowKvCache::enable_report; slower, and
  // the cache keeps an exact K/V copy); RunStats::reports collects the per-layer diagnostics.
  bool report = false;
};

struct RunStats {
  int64_t resumed = 0;                       // runs found in the results file
  int64_t ran = 0;                           // runs made now
  std::string notice;                        // the first ShadowKV notice (e.g. budget covering the prompt)
  // EvalEnv::report: per (task, context), the ShadowKV runs made now merged layer by layer (resumed runs have none).
  struct ReportKey {
    std::string task;
    int64_t context = 0;
    auto operator<=>(const ReportKey&) const = default;
  };
  struct TaskReport {
    std::vector<LayerReport> layers;  // merged over the runs
    int64_t runs = 0;
  };
  std::map<ReportKey, TaskReport> reports;
};

// (tokens done, tokens total): prompt and generation tokens of the runs still to make.
using EvalProgressFn = std::function<void(int64_t done, int64_t total)>;

// Runs every run of the plan missing from `results`. Throws Error(kInvalidArgument) when a finished run in the
// file was made from another prompt than the one generated now (the generator or haystack changed).
RunStats run_plan(const EvalPlan& plan, const EvalEnv& env, ResultsFile& results,
                  const EvalProgressFn& progress = {});

// The scores of a plan's runs found in `results`.
struct Cell {
  std::string task;
  int64_t context = 0;
  std::optional<double> depth;
  std::string method;
  int64_t samples = 0;                       // runs found
  double score = 0.0;                        // mean of their scores, x 100 (RULER's scale)
};

struct MethodAverage {
  int64_t cells = 0;                         // cells with at least one run
  int64_t samples = 0;
  double score = 0.0;                        // mean of the cell scores (each task x context weighs the same)
};

struct Summary {
  std::vector<Cell> cells;                   // plan order: context, task, depth, method
  std::map<std::string, MethodAverage> average;
};

Summary summarize(const EvalPlan& plan, const ResultsFile& results);

}  // namespace skv::eval
