// Engine step loop.
#include "engine/engine.h"

#include <limits>
#include <string>

namespace skv {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "";
    case FinishReason::kStopToken: return "stop";
    case FinishReason::kMaxTokens: return "length";
    case FinishReason::kCancelled: return "cancelled";
  }
  return "";
}

Engine::Engine(LlamaModel& model, KvCache& cache) : model_(model), cache_(cache) {}

SeqId Engine::submit(GenerationRequest request, ProgressFn prefill_progress) {
  const ModelConfig& c = model_.config();
  if (request.prompt.empty()) throw Error(ErrorCode::kInvalidArgument, "a request needs at least one prompt token");
  if (request.max_new_tokens < 1)
    throw Error(ErrorCode::kInvalidArgument,
                "max new tokens must be at least 1, got " + std::to_string(request.max_new_tokens));
  for (int32_t t : request.prompt)
    if (t < 0 || t >= c.vocab_size)
      throw Error(ErrorCode::kInvalidArgument, "prompt token " + std::to_string(t) + " is outside the vocabulary [0, " +
                                                   std::to_string(c.vocab_size) + ")");
  validate_sampling_params(request.sampling);
  if (request.max_new_tokens > std::numeric_limits<int64_t>::max() - static_cast<int64_t>(request.prompt.size()))
    throw Error(ErrorCode::kInvalidArgument, "max new tokens " + std::to_string(request.max_new_tokens) + " is too large");
  const SeqId id = next_id_++;
  // The last generated token is never fed back, so the cache holds at most prompt + max_new_tokens - 1 tokens.
  cache_.add_sequence(id, static_cast<int64_t>(request.prompt.size()) + request.max_new_tokens - 1);
  Sampler sampler(request.sampling);
  seqs_.emplace(id, Sequence{std::move(request), sampler, std::move(prefill_progress)});
  return id;
}

void Engine::cancel(SeqId seq) {
  if (seqs_.erase(seq)) cache_.release(seq);
}

TokenEvent Engine::emit(SeqId id, Sequence& s, int32_t token) {
  ++s.generated;
  s.last_token = token;
  TokenEvent ev{id, token, FinishReason::kNone};
  for (int32_t stop : s.request.stop_token_ids)
    if (token == stop) ev.finish = FinishReason::kStopToken;
  if (ev.finish == FinishReason::kNone && s.generated >= s.request.max_new_tokens) ev.finish = FinishReason::kMaxTokens;
  return ev;
}

std::vector<TokenEvent> Engine::step() {
  using Clock = std::chrono::steady_clock;
  const int64_t vocab = model_.config().vocab_size;
  std::vector<TokenEvent> events;
  DecodeBatch batch;
  std::vector<int32_t> tokens;
  for (auto& [id, s] : seqs_) {
    if (!s.prefilled) {
      logits_.resize(static_cast<size_t>(vocab));
      const auto t0 = Clock::now();
      try {
        model_.prefill(cache_, id, s.request.prompt, logits_, s.progress);
      } catch (...) {
        // A half-done prefill leaves partial K/V behind: drop the sequence rather than prefill it again on top.
        cache_.release(id);
        seqs_.erase(id);
        throw;
      }
      stats_.prefill_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      stats_.prefill_tokens += static_cast<int64_t>(s.request.prompt.size());
      s.prefilled = true;
      events.push_back(emit(id, s, s.sampler.sample(logits_)));
    } else {
      batch.seqs.push_back(id);
      batch.positions.push_back(cache_.length(id));
      tokens.push_back(s.last_token);
    }
  }
  if (batch.size() > 0) {
    logits_.resize(static_cast<size_t>(batch.size() * vocab));
    const auto t0 = Clock::now();
    try {
      model_.decode(cache_, batch, tokens, logits_);
    } catch (...) {
      // Some layers may hold the step's token and others not: these sequences cannot go on.
      for (SeqId id : batch.seqs) {
        cache_.release(id);
        seqs_.erase(id);
      }
      throw;
    }
    stats_.decode_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    stats_.decode_tokens += batch.size();
    ++stats_.decode_steps;
    for (int64_t b = 0; b < batch.size(); ++b) {
      const SeqId id = batch.seqs[static_cast<size_t>(b)];
      Sequence& s = seqs_.at(id);
      events.push_back(emit(id, s, s.sampler.sample(std::span<const float>(logits_).subspan(
                                        static_cast<size_t>(b * vocab), static_cast<size_t>(vocab)))));
    }
  }
  for (const TokenEvent& ev : events)
    if (ev.finish != FinishReason::kNone) {
      seqs_.erase(ev.seq);
      cache_.release(ev.seq);
    }
  return events;
}

}  // namespace skv
