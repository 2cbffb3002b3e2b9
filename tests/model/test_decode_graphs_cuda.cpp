// Decode steps replayed from CUDA graphs (ModelOptions::cuda_graphs) against the same steps launched op by op:
// a random-weight model (bf16, head_dim 64 and 128, GQA, with and without q/k/v bias) decodes batches of
// sequences of different lengths; the logits of every step must be bit-identical with graphs on and off (a replay
// runs the same kernels on the same data), graphs must actually be captured and replayed, and a change of shape
// (a sequence joining, a length crossing a bucket of the cache's key, a prefill in between) must be
// followed, never replayed stale. Label cuda: skipped without a device.
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "backend/device.h"
#include "kv/cuda_full_kv_cache.h"
#include "model/llama_model.h"
#include "testing/cuda_testing.h"

namespace skv {
namespace {

ModelConfig small_config(int64_t head_dim, bool bias) {
  ModelConfig c;
  c.vocab_size = 1000;
  c.dim = 256;
  c.hidden_dim = 688;
  c.n_layers = 3;
  c.n_q_heads = 8;
  c.n_kv_heads = 2;
  c.head_dim = head_dim;
  c.rope_theta = 500000.0;
  c.max_position_embeddings = 8192;
  c.attention_bias = bias;
  return c;
}

struct Runner {
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<CudaFullKvCache> cache;
  Runner(const ModelConfig& c, bool graphs, int64_t slots, int64_t capacity) {
    ModelOptions o;
    o.device = {DeviceKind::kCuda, 0};
    o.cuda_graphs = graphs;
    model = LlamaModel::with_random_weights(c, o, 11);
    cache = std::make_unique<CudaFullKvCache>(c.n_layers, c.n_q_heads, c.n_kv_heads, c.head_dim, slots, capacity);
  }
  void prefill(SeqId seq, int64_t n_tokens) {
    std::vector<int32_t> tokens(static_cast<size_t>(n_tokens));
    for (int64_t i = 0; i < n_tokens; ++i) tokens[static_cast<size_t>(i)] = static_cast<int32_t>((seq * 31 + i * 7) % 1000);
    cache->add_sequence(seq, cache->capacity());
    std::vector<float> last(static_cast<size_t>(model->config().vocab_size));
    model->prefill(*cache, seq, tokens, last);
  }
  std::vector<float> step(const std::vector<SeqId>& seqs, int step_index) {
    DecodeBatch b;
    std::vector<int32_t> tokens;
    for (SeqId s : seqs) {
      b.seqs.push_back(s);
      b.positions.push_back(cache->length(s));
      tokens.push_back(static_cast<int32_t>((s * 13 + step_index * 5) % 1000));
    }
    std::vector<float> logits(seqs.size() * static_cast<size_t>(model->config().vocab_size));
    model->decode(*cache, b, tokens, logits);
    return logits;
  }
};

void check_graphs_match_eager(const ModelConfig& c) {
  Runner eager(c, false, 4, 4096), graphed(c, true, 4, 4096);
  for (Runner* r : {&eager, &graphed}) {
    r->prefill(0, 1000);  // crosses the 1024-token length bucket while decoding
    r->prefill(1, 37);
  }
  int steps = 0;
  auto run = [&](const std::vector<SeqId>& seqs, int n) {
    for (int i = 0; i < n; ++i, ++steps) {
      const auto a = eager.step(seqs, steps), b = graphed.step(seqs, steps);
      ASSERT_EQ(a.size(), b.size());
      ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
          << "step " << steps << ": graph replay differs from eager launches";
    }
  };
  run({0}, 40);        // batch 1, through the bucket boundary at 1024
  run({1, 0}, 6);      // a new shape: batch 2
  for (Runner* r : {&eager, &graphed}) r->prefill(2, 700);  // prefill between decode steps
  run({2, 0, 1}, 6);   // batch 3
  run({0}, 4);         // back to batch 1: its graph must not be stale
  const DecodeStats& s = graphed.model->decode_stats();
  EXPECT_EQ(eager.model->decode_stats().replays, 0);
  EXPECT_GE(s.captures, 3);
  EXPECT_GE(s.replays, 40);
  EXPECT_EQ(s.replays + s.eager_steps, steps);
  std::printf("graphs: %lld captures, %lld replays, %lld eager steps of %d\n", static_cast<long long>(s.captures),
              static_cast<long long>(s.replays), static_cast<long long>(s.eager_steps), steps);
}

TEST(DecodeGraphsCuda, ReplaysMatchEagerHeadDim128) {
  SKV_REQUIRE_CUDA_OR_SKIP();
  check_graphs_match_eager(small_config(128, false));
}

TEST(DecodeGraphsCuda, ReplaysMatchEagerHeadDim64WithBias) {
  SKV_REQUIRE_CUDA_OR_SKIP();
  check_graphs_match_eager(small_config(64, true));
}

// A cache freed and a new one allocated (often at the same host address, always with other device buffers) must
// not replay the old cache's graph: graphs are keyed by the cache's instance id, not its address.
TEST(DecodeGraphsCuda, NewCacheIsNotReplayedWithOldAddresses) {
  SKV_REQUIRE_CUDA_OR_SKIP();
  const ModelConfig c = small_config(64, false);
  Runner eager(c, false, 1, 512), graphed(c, true, 1, 512);
  for (int round = 0; round < 3; ++round) {
    for (Runner* r : {&eager, &graphed}) {
      r->cache.reset();
      r->cache = std::make_unique<CudaFullKvCache>(c.n_layers, c.n_q_heads, c.n_kv_heads, c.head_dim, 1, 512);
      r->prefill(0, 20 + 13 * round);
    }
    for (int i = 0; i < 4; ++i) {
      const auto a = eager.step({0}, 100 * round + i), b = graphed.step({0}, 100 * round + i);
      ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << "round " << round << " step " << i;
    }
  }
  EXPECT_GE(graphed.model->decode_stats().replays, 6);
}

// Programmatic dependent launch (sm_90: each decode kernel may start while the one before it ends, common.cuh)
// must not change a bit of the results, op by op or in graphs, through prefill, a length-bucket change and a
// batch change.
TEST(DecodeGraphsCuda, ProgrammaticLaunchChangesNothing) {
  SKV_REQUIRE_CUDA_OR_SKIP();
  const ModelConfig c = small_config(128, false);
  auto run_all = [&](bool pdl, bool graphs) {
    set_programmatic_launch(pdl);
    Runner r(c, graphs, 2, 2048);
    r.prefill(0, 1010);
    r.prefill(1, 50);
    std::vector<std::vector<float>> out;
    for (int i = 0; i < 24; ++i) out.push_back(r.step(i < 16 ? std::vector<SeqId>{0} : std::vector<SeqId>{1, 0}, i));
    return out;
  };
  const auto ordinary = run_all(false, false);
  for (const bool graphs : {false, true}) {
    const auto programmatic = run_all(true, graphs);
    ASSERT_EQ(programmatic.size(), ordinary.size());
    for (size_t i = 0; i < ordinary.size(); ++i)
      ASSERT_EQ(std::memcmp(programmatic[i].data(), ordinary[i].data(), ordinary[i].size() * sizeof(float)), 0)
          << "step " << i << (graphs ? " (graphs)" : " (op by op)") << ": PDL changed the logits";
  }
  set_programmatic_launch(true);
  std::printf("pdl: programmatic launch %s on this device\n", programmatic_launch_enabled(0) ? "active" : "inactive");
}

// f32 weights take cuBLAS, which is not captured: every step runs eagerly and nothing breaks.
TEST(DecodeGraphsCuda, F32WeightsRunEagerly) {
  SKV_REQUIRE_CUDA_OR_SKIP();
  const ModelConfig c = small_config(64, false);
  ModelOptions o;
  o.device = {DeviceKind::kCuda, 0};
  o.weight_dtype = DType::kF32;
  auto model = LlamaModel::with_random_weights(c, o, 5);
  CudaFullKvCache cache(c.n_layers, c.n_q_heads, c.n_kv_heads, c.head_dim, 1, 256);
  cache.add_sequence(0, 256);
  std::vector<int32_t> prompt{1, 2, 3};
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  model->prefill(cache, 0, prompt, logits);
  for (int i = 0; i < 5; ++i) {
    DecodeBatch b{{0}, {cache.length(0)}};
    const std::vector<int32_t> t{static_cast<int32_t>(i + 4)};
    model->decode(cache, b, t, logits);
  }
  EXPECT_EQ(model->decode_stats().replays, 0);
  EXPECT_EQ(model->decode_stats().eager_steps, 5);
}

}  // namespace
}  // namespace skv
