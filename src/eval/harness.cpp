// The evaluation loop and the summary of its results.
#include "eval/harness.h"

#include <chrono>

#include "core/error.h"
#include "engine/engine.h"
#include "kv/shadow_kv_cache.h"
#include "model/llama_model.h"
#include "model/rope_frequencies.h"

namespace skv::eval {
namespace {

struct Generated {
  std::vector<int32_t> tokens;  // stop token excluded
  std::string finish;
  double seconds = 0.0;
};

Generated generate_greedy(LlamaModel& model, KvCache& cache, const std::vector<int32_t>& prompt,
                          int64_t max_new_tokens, const std::vector<int32_t>& stop_ids,
                          const std::function<void(int64_t)>& progress) {
  const auto start = std::chrono::steady_clock::now();
  Engine engine(model, cache);
  GenerationRequest request;
  request.prompt = prompt;
  request.max_new_tokens = max_new_tokens;
  request.sampling = SamplingParams{};  // greedy
  request.stop_token_ids = stop_ids;
  engine.submit(std::move(request), [&progress](int64_t done, int64_t) {
    if (progress) progress(done);
  });
  Generated g;
  g.finish = "length";
  const auto n_prompt = static_cast<int64_t>(prompt.size());
  while (engine.has_work()) {
    for (const TokenEvent& ev : engine.step()) {
      if (ev.finish == FinishReason::kStopToken) {
        g.finish = "stop";
      } else {
        g.tokens.push_back(ev.token);
      }
    }
    if (progress) progress(n_prompt + static_cast<int64_t>(g.tokens.size()));
  }
  g.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return g;
}

struct Unit {  // one sample and the methods still to run on it
  std::string task;
  int64_t context;
  std::optional<double> depth;
  int64_t index;
  std::vector<AttentionKind> missing;
};

}  // namespace

RunStats run_plan(const EvalPlan& plan, const EvalEnv& env, ResultsFile& results, const EvalProgressFn& progress) {
  RunStats stats;
  std::vector<std::optional<double>> depths;
  if (plan.depths.empty()) depths.emplace_back();
  for (double d : plan.depths) depths.emplace_back(d);

  std::vector<Unit> units;
  int64_t total = 0;
  for (int64_t context : plan.contexts)
    for (const std::string& task : plan.tasks)
      for (const auto& depth : depths)
        for (int64_t i = plan.first_sample; i < plan.samples; ++i) {
          Unit u{task, context, depth, i, {}};
          for (AttentionKind m : plan.methods) {
            if (results.find(record_key(task, context, depth, i, attention_kind_name(m))))
              ++stats.resumed;
            else
              u.missing.push_back(m);
          }
          if (u.missing.empty()) continue;
          total += context * static_cast<int64_t>(u.missing.size());
          units.push_back(std::move(u));
        }
  if (units.empty()) return stats;

  const ModelConfig& c = env.model->config;
  ModelOptions model_options;
  model_options.device = env.device;
  model_options.weight_dtype = env.weight_dtype;
  model_options.kv_dtype = env.kv_dtype;
  LlamaModel model(env.model, model_options);
  const KvCacheShape shape{c.n_layers, c.n_q_heads, c.n_kv_heads, c.head_dim, rope_inv_freq(c),
                           rope_position_scale(c)};
  int64_t done = 0, reported = -1;
  auto report = [&](int64_t d) {
    if (progress && d != reported) progress(d, total);
    reported = d;
  };
  report(0);
  for (const Unit& u : units) {
    const Sample s = env.generator->generate(u.task, u.context, u.index, u.depth);
    const std::string hash = hash_hex(s.prompt_hash);
    // Finished methods of this sample must have run the same prompt.
    for (AttentionKind m : plan.methods) {
      const ResultRecord* r = results.find(record_key(u.task, u.context, u.depth, u.index, attention_kind_name(m)));
      if (r && r->prompt_hash != hash)
        throw Error(ErrorCode::kInvalidArgument,
                    results.path().string() + " holds a " + u.task + " sample " + std::to_string(u.index) +
                        " at context " + std::to_string(u.context) + " made from another prompt (hash " +
                        r->prompt_hash + ", now " + hash +
                        "): the generator or the haystack changed; pass another --out");
    }
    for (AttentionKind m : u.missing) {
      AttentionOptions options;
      options.kind = m;
      options.shadow = env.shadow;
      options.device = env.device;
      options.kv_dtype = env.kv_dtype;
      options.report = env.report && m == AttentionKind::kShadowKv;
      options.max_sequences = 1;
      options.max_tokens = s.prompt_tokens() + s.max_new_tokens;
      std::unique_ptr<KvCache> cache = make_kv_cache(shape, options);
      const int64_t base = done;
      const Generated g = generate_greedy(model, *cache, s.tokens, s.max_new_tokens, env.stop_ids,
                                          [&](int64_t d) { report(base + d); });
      if (const auto* shadow = dynamic_cast<const ShadowKvCache*>(cache.get())) {
        if (stats.notice.empty() && !shadow->notice().empty()) stats.notice = shadow->notice();
        if (options.report) {
          RunStats::TaskReport& acc = stats.reports[{u.task, u.context}];
          const std::vector<LayerReport> layers = shadow->report();
          if (acc.layers.empty()) acc.layers.resize(layers.size());
          for (size_t l = 0; l < layers.size() && l < acc.layers.size(); ++l) acc.layers[l].merge(layers[l]);
          ++acc.runs;
        }
      }
      ResultRecord r;
      r.task = u.task;
      r.context = u.context;
      r.depth = u.depth;
      r.sample = u.index;
      r.method = attention_kind_name(m);
      r.prompt_hash = hash;
      r.prompt_tokens = s.prompt_tokens();
      r.answers = s.answers;
      // Ids past the tokenizer's vocabulary (a model's padding rows) have no text: leave them out.
      std::vector<int32_t> known;
      for (int32_t t : g.tokens)
        if (t >= 0 && t < env.tokenizer->vocab_size()) known.push_back(t);
      r.output = env.tokenizer->decode(known, /*skip_special_tokens=*/true);
      r.score = score_prediction(s.metric, r.output, s.answers);
      r.finish = g.finish;
      r.generated_tokens = static_cast<int64_t>(g.tokens.size());
      r.seconds = g.seconds;
      results.append(r);
      ++stats.ran;
      done = base + u.context;
      report(done);
    }
  }
  return stats;
}

Summary summarize(const EvalPlan& plan, const ResultsFile& results) {
  Summary sum;
  std::vector<std::optional<double>> depths;
  if (plan.depths.empty()) depths.emplace_back();
  for (double d : plan.depths) depths.emplace_back(d);
  std::map<std::string, double> cell_score_sum;
  for (int64_t context : plan.contexts)
    for (const std::string& task : plan.tasks)
      for (const auto& depth : depths)
        for (AttentionKind m : plan.methods) {
          Cell cell{task, context, depth, attention_kind_name(m), 0, 0.0};
          double total = 0.0;
          for (int64_t i = plan.first_sample; i < plan.samples; ++i)
            if (const ResultRecord* r = results.find(record_key(task, context, depth, i, cell.method))) {
              ++cell.samples;
              total += r->score;
            }
          if (cell.samples > 0) {
            cell.score = 100.0 * total / static_cast<double>(cell.samples);
            MethodAverage& a = sum.average[cell.method];
            ++a.cells;
            a.samples += cell.samples;
            cell_score_sum[cell.method] += cell.score;
          }
          sum.cells.push_back(std::move(cell));
        }
  for (auto& [method, a] : sum.average) a.score = cell_score_sum[method] / static_cast<double>(a.cells);
  return sum;
}

}  // namespace skv::eval
