// Test helper: greedy generation through the Engine, several requests submitted together (a batch of sequences
// of different lengths), on whichever KvCache the test built (CPU or CUDA).
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "engine/engine.h"
#include "kv/kv_cache.h"
#include "model/llama_model.h"

namespace skv::testing {

// Each prompt's generated tokens (max_new_tokens each, greedy, no stop tokens).
inline std::vector<std::vector<int32_t>> generate_greedy(LlamaModel& model, KvCache& cache,
                                                         const std::vector<std::vector<int32_t>>& prompts,
                                                         int64_t max_new_tokens) {
  Engine engine(model, cache);
  std::map<SeqId, size_t> index;
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerationRequest r;
    r.prompt = prompts[i];
    r.max_new_tokens = max_new_tokens;
    index[engine.submit(r)] = i;
  }
  std::vector<std::vector<int32_t>> out(prompts.size());
  while (engine.has_work())
    for (const TokenEvent& ev : engine.step()) out[index.at(ev.seq)].push_back(ev.token);
  return out;
}

}  // namespace skv::testing
