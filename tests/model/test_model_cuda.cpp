// stories15M (head_dim 48: the generic attention kernels) on CUDA (label cuda; skipped without a device, failing
// when SKV_REQUIRE_CUDA is set):
//  - f32 weights and f32 KV (the exact mode): the same 200 greedy tokens from BOS as llama2.c
//    (../shared/data/stories15M-greedy-from-bos.txt) and as the CPU backend, and every position's logits within
//    f32 rounding of the CPU's (prompt and decode paths);
//  - bf16 weights and bf16 KV: logits at every position of a prompt within bf16 tolerance of the CPU (relative
//    L2 <= 2e-2); how many of 200 greedy tokens match llama2.c is printed;
//  - a batch of 3 sequences of different lengths equals each alone (tokens), through the Engine.
// Then the testbed model (head_dim 64: the tensor-core kernels with bf16 KV, the generic ones with f32 KV).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "backend/device.h"
#include "engine/engine.h"
#include "kv/cuda_full_kv_cache.h"
#include "kv/full_kv_cache.h"
#include "loader/model_loader.h"
#include "model/llama_model.h"
#include "testing/cuda_testing.h"
#include "testing/engine_testing.h"
#include "testing/tensor_testing.h"

namespace skv {
namespace {

#define REQUIRE_CUDA() SKV_REQUIRE_CUDA_OR_SKIP()

// SKV_STORIES15M_DIR may name another copy, e.g. the bf16 one that fits the GPU machine's transfer limit
// (scripts/make_bf16_copy.py): every CUDA-vs-CPU check holds for it, the llama2.c golden tokens only for f32.
std::filesystem::path stories15m_dir() {
  const char* env = std::getenv("SKV_STORIES15M_DIR");
  return env != nullptr && *env != '\0' ? std::filesystem::path(env) : std::filesystem::path(SKV_MODELS_DIR) / "stories15M";
}

std::shared_ptr<const LoadedModel> stories15m() {
  static std::shared_ptr<const LoadedModel> model = [] {
    const std::filesystem::path dir = stories15m_dir();
    if (!std::filesystem::exists(dir / "config.json"))
      ADD_FAILURE() << dir << " is missing: run scripts/setup.sh (it fetches and converts stories15M)";
    return std::make_shared<const LoadedModel>(load_model(dir));
  }();
  return model;
}

ModelOptions cuda_options(DType weight_dtype, DType kv_dtype = DType::kBF16) {
  ModelOptions o;
  o.device = {DeviceKind::kCuda, 0};
  o.weight_dtype = weight_dtype;
  o.kv_dtype = kv_dtype;
  return o;
}

// Greedy generation through the Engine on a CudaFullKvCache whose K/V are in the model's options().kv_dtype.
std::vector<std::vector<int32_t>> generate_greedy_cuda(LlamaModel& model,
                                                       const std::vector<std::vector<int32_t>>& prompts,
                                                       int64_t max_new_tokens) {
  const ModelConfig& c = model.config();
  int64_t longest = 0;
  for (const auto& p : prompts) longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
  CudaFullKvCache cache(c.n_layers, c.n_q_heads, c.n_kv_heads, c.head_dim, static_cast<int64_t>(prompts.size()),
                        longest + max_new_tokens, 0, model.options().kv_dtype);
  EXPECT_EQ(cache.memory_use().device_bytes,
            CudaFullKvCache::slab_bytes(c.n_layers, c.n_kv_heads, c.head_dim, static_cast<int64_t>(prompts.size()),
                                        longest + max_new_tokens, model.options().kv_dtype));
  return testing::generate_greedy(model, cache, prompts, max_new_tokens);
}

std::string join(const std::vector<int32_t>& v) {
  std::string s;
  for (int32_t t : v) s += std::to_string(t) + " ";
  return s;
}

std::vector<int32_t> golden_from_bos() {
  std::ifstream in(std::filesystem::path(SKV_SHARED_DATA_DIR) / "stories15M-greedy-from-bos.txt");
  EXPECT_TRUE(in) << "missing ../shared/data/stories15M-greedy-from-bos.txt";
  std::vector<int32_t> golden;
  for (int32_t t; in >> t;) golden.push_back(t);
  EXPECT_EQ(golden.size(), 200u);
  return golden;
}

size_t same_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

size_t same_count(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) n += a[i] == b[i];
  return n;
}

std::vector<int32_t> generate_greedy_cpu(LlamaModel& model, const std::vector<int32_t>& prompt, int64_t n);

// A prompt of stories15M's kind ("Once upon a time, there was a little girl") and a longer one.
const std::vector<int32_t> kStoryPrompt{1, 9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 7826};

std::vector<int32_t> long_story_prompt() {
  std::vector<int32_t> t = kStoryPrompt;
  for (int i = 0; i < 150; ++i) t.push_back(300 + (i * 37) % 5000);
  return t;
}

// The worst relative L2 error of each position's logits ([n, vocab] both).
double worst_position_error(const std::vector<float>& got, const std::vector<float>& want, size_t vocab) {
  double worst = 0.0;
  for (size_t pos = 0; pos * vocab < want.size(); ++pos)
    worst = std::max(worst, testing::relative_l2_error(got.data() + pos * vocab, want.data() + pos * vocab, vocab));
  return worst;
}

// The exact mode: f32 weights and f32 KV run the generic attention kernels with f32 math throughout.
TEST(ModelCuda, F32WeightsF32KvGreedyFromBosMatchesLlama2cAndCpu) {
  REQUIRE_CUDA();
  const std::vector<int32_t> golden = golden_from_bos();
  ASSERT_EQ(golden.size(), 200u);
  LlamaModel cpu(stories15m());
  const std::vector<int32_t> want_cpu = generate_greedy_cpu(cpu, {1}, 200);
  LlamaModel model(stories15m(), cuda_options(DType::kF32, DType::kF32));
  const auto got = generate_greedy_cuda(model, {{1}}, 200);
  std::printf("f32 weights + f32 KV on CUDA, greedy from BOS: %zu/200 tokens equal llama2.c's before the first "
              "difference, %zu/200 the CPU backend's\n",
              same_prefix(got[0], golden), same_prefix(got[0], want_cpu));
  if (stories15m()->weights.layers[0].wq.dtype == DType::kF32)
    EXPECT_EQ(got[0], golden) << "got: " << join(got[0]);
  else
    std::printf("(weights stored as %s, not the f32 original: the llama2.c tokens are not expected)\n",
                dtype_name(stories15m()->weights.layers[0].wq.dtype));
  EXPECT_EQ(got[0], want_cpu) << "got: " << join(got[0]);
}

TEST(ModelCuda, F32WeightsF32KvLogitsMatchCpu) {
  REQUIRE_CUDA();
  const std::vector<int32_t> tokens = long_story_prompt();
  LlamaModel cpu(stories15m());
  // A prefill chunk of 64: the 161 tokens take three chunks (q_start > 0 in the attention).
  ModelOptions o = cuda_options(DType::kF32, DType::kF32);
  o.prefill_chunk_tokens = 64;
  LlamaModel gpu(stories15m(), o);
  const ModelConfig& c = cpu.config();
  const size_t v = static_cast<size_t>(c.vocab_size), last = (tokens.size() - 1) * v;
  const auto want = cpu.prompt_logits(tokens);
  const auto got = gpu.prompt_logits(tokens);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_TRUE(std::isfinite(got[i])) << "logit " << i;
  const double err = worst_position_error(got, want, v);
  std::printf("f32 weights + f32 KV on CUDA vs CPU, %zu positions: worst relative L2 logit error %.3e\n",
              tokens.size(), err);
  EXPECT_LE(err, 1e-4);
  // The decode path (attention_decode_batch on the f32 cache) after a prefill of 5 tokens.
  CudaFullKvCache cache(c.n_layers, c.n_q_heads, c.n_kv_heads, c.head_dim, 1, static_cast<int64_t>(tokens.size()), 0,
                        DType::kF32);
  cache.add_sequence(0, static_cast<int64_t>(tokens.size()));
  std::vector<float> logits(v);
  gpu.prefill(cache, 0, std::span(tokens).first(5), logits);
  double worst_decode = testing::relative_l2_error(logits.data(), want.data() + 4 * v, v);
  for (size_t i = 5; i < tokens.size(); ++i) {
    DecodeBatch batch{{0}, {static_cast<int64_t>(i)}};
    gpu.decode(cache, batch, std::span(tokens).subspan(i, 1), logits);
    worst_decode = std::max(worst_decode, testing::relative_l2_error(logits.data(), want.data() + i * v, v));
  }
  std::printf("f32 weights + f32 KV on CUDA, prefill + %zu decode steps vs CPU: worst relative L2 logit error %.3e\n",
              tokens.size() - 5, worst_decode);
  EXPECT_LE(worst_decode, 1e-4);
  EXPECT_LE(testing::relative_l2_error(logits.data(), want.data() + last, v), 1e-4);
}

TEST(ModelCuda, Bf16WeightsBf16KvLogitsNearCpu) {
  REQUIRE_CUDA();
  const std::vector<int32_t>& tokens = kStoryPrompt;
  LlamaModel cpu(stories15m());
  LlamaModel gpu(stories15m(), cuda_options(DType::kBF16, DType::kBF16));
  const ModelConfig& c = cpu.config();
  const auto want = cpu.prompt_logits(tokens);
  const auto got = gpu.prompt_logits(tokens);
  ASSERT_EQ(got.size(), want.size());
  const size_t v = static_cast<size_t>(c.vocab_size), last = (tokens.size() - 1) * v;
  for (size_t i = 0; i < got.size(); ++i) ASSERT_TRUE(std::isfinite(got[i])) << "logit " << i;
  for (size_t pos : {size_t{0}, size_t{3}, size_t{7}, tokens.size() - 1}) {
    const double err = testing::relative_l2_error(got.data() + pos * v, want.data() + pos * v, v);
    std::printf("bf16 weights + bf16 KV on CUDA vs CPU f32, position %zu logits: relative L2 error %.3e\n", pos, err);
    EXPECT_LE(err, 2e-2) << "position " << pos;
  }
  // Prefill + decode on CUDA agrees with the CPU's prompt logits too (the decode path).
  CudaFullKvCache cache(c.n_layers, c.n_q_heads, c.n_kv_heads, c.head_dim, 1, static_cast<int64_t>(tokens.size()), 0);
  cache.add_sequence(0, static_cast<int64_t>(tokens.size()));
  std::vector<float> logits(v);
  gpu.prefill(cache, 0, std::span(tokens).first(5), logits);
  for (size_t i = 5; i < tokens.size(); ++i) {
    DecodeBatch batch{{0}, {static_cast<int64_t>(i)}};
    gpu.decode(cache, batch, std::span(tokens).subspan(i, 1), logits);
  }
  const double err_decode = testing::relative_l2_error(logits.data(), want.data() + last, v);
  std::printf("bf16 weights + bf16 KV on CUDA, prefill+decode vs CPU f32: relative L2 error %.3e\n", err_decode);
  EXPECT_LE(err_decode, 2e-2);
  const std::vector<int32_t> golden = golden_from_bos();
  const auto toks = generate_greedy_cuda(gpu, {{1}}, 200);
  std::printf("bf16 weights + bf16 KV on CUDA, greedy from BOS: %zu/200 tokens equal llama2.c's (%zu before the "
              "first difference): %s\n",
              same_count(toks[0], golden), same_prefix(toks[0], golden), join(toks[0]).c_str());
  ASSERT_EQ(toks[0].size(), 200u);
}

TEST(ModelCuda, BatchOfDifferentLengthsEqualsEachAlone) {
  REQUIRE_CUDA();
  LlamaModel model(stories15m(), cuda_options(DType::kF32, DType::kF32));
  LlamaModel cpu(stories15m());
  const std::vector<std::vector<int32_t>> prompts{{1}, {1, 9038, 2501, 263, 931}, {1, 365, 2354, 322, 670, 6114, 892}};
  const auto batched = generate_greedy_cuda(model, prompts, 40);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto alone = generate_greedy_cuda(model, {prompts[i]}, 40);
    EXPECT_EQ(batched[i], alone[0]) << "prompt " << i;
    EXPECT_EQ(batched[i], generate_greedy_cpu(cpu, prompts[i], 40)) << "prompt " << i << " vs the CPU backend";
  }
}

// The testbed model (models/testbed, committed): head_dim 64, GQA 4:1, 32K context.
std::shared_ptr<const LoadedModel> testbed() {
  static std::shared_ptr<const LoadedModel> model = std::make_shared<const LoadedModel>(
      load_model(std::filesystem::path(SKV_SOURCE_DIR) / "models" / "testbed"));
  return model;
}

// A prompt of the testbed's own kind: text, then a question whose answer is in it.
std::vector<int32_t> testbed_prompt(int64_t n_tokens) {
  std::vector<int32_t> t{0};  // <|bos|>
  for (int64_t i = 1; i < n_tokens; ++i) t.push_back(static_cast<int32_t>(2 + (i * 7919) % 8000));
  return t;
}

// Greedy generation on the CPU backend through the Engine.
std::vector<int32_t> generate_greedy_cpu(LlamaModel& model, const std::vector<int32_t>& prompt, int64_t n) {
  const ModelConfig& c = model.config();
  FullKvCache cache(c.n_layers, c.n_kv_heads, c.head_dim);
  Engine engine(model, cache);
  GenerationRequest r;
  r.prompt = prompt;
  r.max_new_tokens = n;
  engine.submit(r);
  std::vector<int32_t> out;
  while (engine.has_work())
    for (const TokenEvent& ev : engine.step()) out.push_back(ev.token);
  return out;
}

// Greedy tokens of the GPU path against the CPU's. With a bf16 KV cache not equal for 200 steps: the tensor-core
// attention kernels round q and P to bf16, so on a high-entropy prompt the argmax flips early (measured on an
// H200, 2026-11-26: 5 of 200 tokens equal with f32 weights, 19 with bf16). With f32 weights and the f32 KV cache
// (the generic kernels, f32 math) the logits agree to f32 rounding; the tokens are printed, not asserted (a
// near-tie on a high-entropy prompt may still flip). What is asserted is the logits' agreement along the CPU's
// greedy path.
TEST(ModelCuda, TestbedGreedyPathLogitsNearCpu) {
  REQUIRE_CUDA();
  const auto prompt = testbed_prompt(1500);
  LlamaModel cpu(testbed());
  const auto want_tokens = generate_greedy_cpu(cpu, prompt, 200);
  std::vector<int32_t> path = prompt;
  path.insert(path.end(), want_tokens.begin(), want_tokens.end() - 1);
  const auto want = cpu.prompt_logits(path);
  const size_t v = static_cast<size_t>(cpu.config().vocab_size);
  // Tolerances on the 200 positions' relative L2 errors: the median, and the worst position. bf16 KV: measured on
  // an H200 with the run-3 testbed (sharper logits than run 1's), median ~5e-3, worst 2.4e-2 (f32 weights) and
  // 2.9e-2 (bf16 weights); with the chain's run 7 (2026-11-27) median 4.8e-3 and 1.03e-2, worst 1.8e-2 and
  // 2.4e-2. bf16 weights round every weight to 8 bits of mantissa, so their median gets twice the room of f32
  // weights'; a wrong kernel is off by O(1).
  struct Mode { DType weights, kv; double median_tol, worst_tol; };
  for (const Mode mode : {Mode{DType::kF32, DType::kBF16, 1e-2, 5e-2}, Mode{DType::kBF16, DType::kBF16, 2e-2, 5e-2},
                          Mode{DType::kF32, DType::kF32, 1e-4, 1e-4}}) {
    LlamaModel gpu(testbed(), cuda_options(mode.weights, mode.kv));
    const auto got_tokens = generate_greedy_cuda(gpu, {prompt}, 200)[0];
    const size_t same = same_prefix(got_tokens, want_tokens);
    const auto got = gpu.prompt_logits(path);
    std::vector<double> errors;
    for (size_t pos = prompt.size() - 1; pos < path.size(); ++pos)
      errors.push_back(testing::relative_l2_error(got.data() + pos * v, want.data() + pos * v, v));
    std::sort(errors.begin(), errors.end());
    const double median = errors[errors.size() / 2], worst = errors.back();
    std::printf("testbed, %s weights and %s KV on CUDA vs f32 CPU: %zu/200 greedy tokens equal before the first "
                "difference; relative L2 logit error along the CPU's greedy path: median %.3e, worst %.3e\n",
                dtype_name(mode.weights), dtype_name(mode.kv), same, median, worst);
    EXPECT_LE(median, mode.median_tol) << dtype_name(mode.weights) << " weights, " << dtype_name(mode.kv) << " KV";
    EXPECT_LE(worst, mode.worst_tol) << dtype_name(mode.weights) << " weights, " << dtype_name(mode.kv) << " KV";
  }
}

TEST(ModelCuda, TestbedLogitsNearCpu) {
  REQUIRE_CUDA();
  const auto tokens = testbed_prompt(3000);
  LlamaModel cpu(testbed());
  LlamaModel gpu(testbed(), cuda_options(DType::kBF16));
  const size_t v = static_cast<size_t>(cpu.config().vocab_size), last = (tokens.size() - 1) * v;
  const auto want = cpu.prompt_logits(tokens);
  const auto got = gpu.prompt_logits(tokens);
  const double err = testing::relative_l2_error(got.data() + last, want.data() + last, v);
  std::printf("testbed bf16 CUDA vs CPU f32 at 3000 tokens, last-position logits: relative L2 error %.3e\n", err);
  EXPECT_LE(err, 2e-2);
}

TEST(ModelCuda, TestbedBatchOfDifferentLengthsEqualsEachAlone) {
  REQUIRE_CUDA();
  LlamaModel model(testbed(), cuda_options(DType::kF32));
  const std::vector<std::vector<int32_t>> prompts{testbed_prompt(1), testbed_prompt(700), testbed_prompt(2100)};
  const auto batched = generate_greedy_cuda(model, prompts, 40);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto alone = generate_greedy_cuda(model, {prompts[i]}, 40);
    EXPECT_EQ(batched[i], alone[0]) << "prompt " << i;
  }
}

TEST(ModelCuda, RandomWeightsOnDeviceAreFinite) {
  REQUIRE_CUDA();
  ModelConfig c = testbed()->config;
  auto model = LlamaModel::with_random_weights(c, cuda_options(DType::kBF16), 3);
  const std::vector<int32_t> tokens{1, 2, 3, 4};
  const auto logits = model->prompt_logits(tokens);
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
}

}  // namespace
}  // namespace skv
