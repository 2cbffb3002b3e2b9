// Engine: the step loop over a batch of sequences of different lengths. Each step prefills the newly
// submitted sequences (their first token comes from the prefill logits) and then decodes one token for every
// running sequence in a single batched forward. Sequences join and leave between steps.
#pragma once

#include <chrono>
#include <map>
#include <vector>

#include "engine/sampler.h"
#include "kv/kv_cache.h"
#include "model/llama_model.h"

namespace skv {

struct GenerationRequest {
  std::vector<int32_t> prompt;           // at least one token
  int64_t max_new_tokens = 128;
  SamplingParams sampling;
  std::vector<int32_t> stop_token_ids;   // generation ends after emitting one of these (EOS)
};

enum class FinishReason { kNone, kStopToken, kMaxTokens, kCancelled };
const char* finish_reason_name(FinishReason reason);  // "", "stop", "length", "cancelled"

struct TokenEvent {
  SeqId seq = -1;
  int32_t token = -1;
  FinishReason finish = FinishReason::kNone;  // set on the last token of a sequence
};

struct EngineStats {
  int64_t prefill_tokens = 0;
  double prefill_seconds = 0.0;
  int64_t decode_tokens = 0;     // tokens produced by decode steps (all sequences)
  double decode_seconds = 0.0;
  int64_t decode_steps = 0;
};

class Engine {
 public:
  Engine(LlamaModel& model, KvCache& cache);

  // Admits a request: validates it and reserves its cache (prompt + max_new_tokens tokens); the prefill runs
  // at the next step(). Throws Error before anything is allocated when the request is invalid or does not fit.
  SeqId submit(GenerationRequest request, ProgressFn prefill_progress = {});
  // Ends a sequence early (e.g. a stop string matched): it frees its cache.
  void cancel(SeqId seq);
  // Runs one step; returns one event per token produced: first those of sequences prefilled in this step,
  // then those of the batched decode, each group in SeqId order.
  std::vector<TokenEvent> step();
  bool has_work() const { return !seqs_.empty(); }
  const EngineStats& stats() const { return stats_; }

 private:
  struct Sequence {
    GenerationRequest request;
    Sampler sampler;
    ProgressFn progress;
    bool prefilled = false;
    int64_t generated = 0;
    int32_t last_token = -1;  // produced but not yet in the cache
  };
  TokenEvent emit(SeqId id, Sequence& s, int32_t token);

  LlamaModel& model_;
  KvCache& cache_;
  std::map<SeqId, Sequence> seqs_;
  SeqId next_id_ = 0;
  std::vector<float> logits_;  // [n_seqs, vocab_size]
  EngineStats stats_;
};

}  // namespace skv
