// llama2.c conversion: a synthetic tiny checkpoint (exact tensor mapping and the RoPE permutation, checked by
// rotating both ways in the test), malformed checkpoints, and the real stories15M.
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include "loader/hf_config.h"
#include "loader/llama2c.h"
#include "loader/model_loader.h"
#include "loader_fixtures.h"
#include "testing/tensor_testing.h"

namespace skv {
namespace {

using testing::TempDir;

struct Checkpoint {
  int32_t dim = 8, hidden = 12, n_layers = 2, n_heads = 2, n_kv_heads = 1, vocab = 10, seq_len = 16;
  std::vector<float> body;

  int64_t head_dim() const { return dim / n_heads; }
  int64_t kv_dim() const { return n_kv_heads * head_dim(); }
  int64_t v() const { return std::abs(vocab); }
  // Offsets (in floats) of the sections, in file order.
  int64_t embed() const { return 0; }
  int64_t rms_att() const { return v() * dim; }
  int64_t wq() const { return rms_att() + int64_t{n_layers} * dim; }
  int64_t wk() const { return wq() + int64_t{n_layers} * dim * dim; }
  int64_t wv() const { return wk() + n_layers * kv_dim() * dim; }
  int64_t wo() const { return wv() + n_layers * kv_dim() * dim; }
  int64_t rms_ffn() const { return wo() + int64_t{n_layers} * dim * dim; }
  int64_t w1() const { return rms_ffn() + int64_t{n_layers} * dim; }
  int64_t w2() const { return w1() + int64_t{n_layers} * hidden * dim; }
  int64_t w3() const { return w2() + int64_t{n_layers} * dim * hidden; }
  int64_t rms_final() const { return w3() + int64_t{n_layers} * hidden * dim; }
  int64_t freqs() const { return rms_final() + dim; }
  int64_t wcls() const { return freqs() + int64_t{seq_len} * head_dim(); }
  int64_t total() const { return wcls() + (vocab < 0 ? v() * dim : 0); }

  void fill(uint64_t seed) { body = skv::testing::random_floats(static_cast<size_t>(total()), seed); }
  void write(const std::filesystem::path& path, int64_t drop_bytes = 0) const {
    std::string bytes(28, '\0');
    const int32_t h[7] = {dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len};
    std::memcpy(bytes.data(), h, sizeof h);
    bytes.append(reinterpret_cast<const char*>(body.data()), body.size() * sizeof(float));
    bytes.resize(bytes.size() - static_cast<size_t>(drop_bytes));
    testing::write_file(path, bytes);
  }
};

std::vector<float> matvec(const float* w, int64_t rows, int64_t cols, const std::vector<float>& x) {
  std::vector<float> y(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) s += double(w[r * cols + c]) * x[static_cast<size_t>(c)];
    y[static_cast<size_t>(r)] = static_cast<float>(s);
  }
  return y;
}

// llama2.c: pairs (2i, 2i+1) of each head rotate by pos * theta^(-2i/hd).
void rope_interleaved(std::vector<float>& v, int64_t hd, int pos) {
  for (size_t h = 0; h < v.size(); h += static_cast<size_t>(hd))
    for (int64_t i = 0; i < hd / 2; ++i) {
      const double a = pos * std::pow(10000.0, -2.0 * double(i) / double(hd));
      float& x0 = v[h + static_cast<size_t>(2 * i)];
      float& x1 = v[h + static_cast<size_t>(2 * i + 1)];
      const float r0 = float(x0 * std::cos(a) - x1 * std::sin(a)), r1 = float(x0 * std::sin(a) + x1 * std::cos(a));
      x0 = r0;
      x1 = r1;
    }
}

// Hugging Face: pairs (i, i + hd/2) rotate by the same angles (rotate_half).
void rope_half(std::vector<float>& v, int64_t hd, int pos) {
  for (size_t h = 0; h < v.size(); h += static_cast<size_t>(hd))
    for (int64_t i = 0; i < hd / 2; ++i) {
      const double a = pos * std::pow(10000.0, -2.0 * double(i) / double(hd));
      float& x0 = v[h + static_cast<size_t>(i)];
      float& x1 = v[h + static_cast<size_t>(i + hd / 2)];
      const float r0 = float(x0 * std::cos(a) - x1 * std::sin(a)), r1 = float(x1 * std::cos(a) + x0 * std::sin(a));
      x0 = r0;
      x1 = r1;
    }
}

bool same_floats(const TensorView& t, const float* want) {
  return std::memcmp(t.data, want, t.nbytes()) == 0;
}

TEST(Llama2c, SyntheticCheckpointMapsEveryTensor) {
  for (int32_t vocab : {10, -10}) {
    TempDir dir;
    Checkpoint ck;
    ck.vocab = vocab;
    ck.fill(7);
    ck.write(dir / "ck.bin");
    convert_llama2c_checkpoint(dir / "ck.bin", dir / "out");
    const LoadedModel m = load_model(dir / "out");
    const ModelConfig& c = m.config;
    EXPECT_EQ(c.arch, Architecture::kLlama);
    EXPECT_EQ(c.dim, 8);
    EXPECT_EQ(c.hidden_dim, 12);
    EXPECT_EQ(c.n_layers, 2);
    EXPECT_EQ(c.n_q_heads, 2);
    EXPECT_EQ(c.n_kv_heads, 1);
    EXPECT_EQ(c.head_dim, 4);
    EXPECT_EQ(c.vocab_size, 10);
    EXPECT_EQ(c.max_position_embeddings, 16);
    EXPECT_EQ(c.tie_word_embeddings, vocab > 0);
    const float* b = ck.body.data();
    const ModelWeights& w = m.weights;
    EXPECT_TRUE(same_floats(w.embed, b + ck.embed()));
    EXPECT_TRUE(same_floats(w.final_norm, b + ck.rms_final()));
    EXPECT_TRUE(same_floats(w.lm_head, b + (vocab > 0 ? ck.embed() : ck.wcls())));
    EXPECT_EQ(w.lm_head.data == w.embed.data, vocab > 0);
    for (int64_t l = 0; l < 2; ++l) {
      const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
      EXPECT_TRUE(same_floats(lw.attn_norm, b + ck.rms_att() + l * 8));
      EXPECT_TRUE(same_floats(lw.mlp_norm, b + ck.rms_ffn() + l * 8));
      EXPECT_TRUE(same_floats(lw.wv, b + ck.wv() + l * 4 * 8));
      EXPECT_TRUE(same_floats(lw.wo, b + ck.wo() + l * 8 * 8));
      EXPECT_TRUE(same_floats(lw.w_gate, b + ck.w1() + l * 12 * 8));  // w1 = gate
      EXPECT_TRUE(same_floats(lw.w_down, b + ck.w2() + l * 8 * 12));  // w2 = down
      EXPECT_TRUE(same_floats(lw.w_up, b + ck.w3() + l * 12 * 8));    // w3 = up
      // wq/wk: new row j < hd/2 of each head is old row 2j, new row hd/2 + j is old row 2j + 1.
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t j = 0; j < 2; ++j) {
          const float* q = lw.wq.ptr<float>() + (h * 4) * 8;
          const float* old = b + ck.wq() + l * 64 + (h * 4) * 8;
          EXPECT_EQ(std::memcmp(q + j * 8, old + (2 * j) * 8, 32), 0);
          EXPECT_EQ(std::memcmp(q + (2 + j) * 8, old + (2 * j + 1) * 8, 32), 0);
        }
    }
  }
}

TEST(Llama2c, PermutedWeightsWithHalfRopeMatchInterleavedRope) {
  TempDir dir;
  Checkpoint ck;
  ck.dim = 32;
  ck.hidden = 16;
  ck.n_heads = 4;
  ck.n_kv_heads = 2;  // head_dim 8, GQA
  ck.fill(11);
  ck.write(dir / "ck.bin");
  convert_llama2c_checkpoint(dir / "ck.bin", dir / "out");
  const LoadedModel m = load_model(dir / "out");
  const int64_t hd = ck.head_dim(), dim = ck.dim, kv_dim = ck.kv_dim();
  const std::vector<float> xq = skv::testing::random_floats(static_cast<size_t>(dim), 3);
  const std::vector<float> xk = skv::testing::random_floats(static_cast<size_t>(dim), 4);
  for (int64_t l = 0; l < ck.n_layers; ++l) {
    const LayerWeights& lw = m.weights.layers[static_cast<size_t>(l)];
    for (int pos : {0, 1, 5, 13}) {
      std::vector<float> q_old = matvec(ck.body.data() + ck.wq() + l * dim * dim, dim, dim, xq);
      std::vector<float> k_old = matvec(ck.body.data() + ck.wk() + l * kv_dim * dim, kv_dim, dim, xk);
      std::vector<float> q_new = matvec(lw.wq.ptr<float>(), dim, dim, xq);
      std::vector<float> k_new = matvec(lw.wk.ptr<float>(), kv_dim, dim, xk);
      rope_interleaved(q_old, hd, pos);
      rope_interleaved(k_old, hd, 3);
      rope_half(q_new, hd, pos);
      rope_half(k_new, hd, 3);
      // Element-wise: the rotated vectors are the same up to the within-head permutation.
      for (int64_t h = 0; h < ck.n_heads; ++h)
        for (int64_t j = 0; j < hd / 2; ++j) {
          EXPECT_NEAR(q_new[h * hd + j], q_old[h * hd + 2 * j], 1e-5);
          EXPECT_NEAR(q_new[h * hd + hd / 2 + j], q_old[h * hd + 2 * j + 1], 1e-5);
        }
      // And the attention scores, which is what the model sees, agree for every (q head, its kv head).
      for (int64_t h = 0; h < ck.n_heads; ++h) {
        const int64_t kh = h / (ck.n_heads / ck.n_kv_heads);
        double s_old = 0, s_new = 0;
        for (int64_t d = 0; d < hd; ++d) {
          s_old += double(q_old[h * hd + d]) * k_old[kh * hd + d];
          s_new += double(q_new[h * hd + d]) * k_new[kh * hd + d];
        }
        EXPECT_NEAR(s_new, s_old, 1e-4) << "layer " << l << " head " << h << " pos " << pos;
      }
    }
  }
}

TEST(Llama2c, RejectsBadCheckpoints) {
  TempDir dir;
  EXPECT_SKV_ERROR(convert_llama2c_checkpoint(dir / "absent.bin", dir / "out"), ErrorCode::kNotFound, "absent.bin");
  Checkpoint ck;
  ck.fill(1);
  ck.write(dir / "trunc.bin", 12);
  EXPECT_SKV_ERROR(convert_llama2c_checkpoint(dir / "trunc.bin", dir / "out"), ErrorCode::kParse, "trunc.bin",
                   "dim 8", "vocab_size 10", "truncated");
  ck.body.push_back(1.0f);
  ck.write(dir / "long.bin");
  EXPECT_SKV_ERROR(convert_llama2c_checkpoint(dir / "long.bin", dir / "out"), ErrorCode::kParse, "long.bin",
                   "not a legacy llama2.c checkpoint");
  ck.n_heads = 3;
  ck.write(dir / "heads.bin");
  EXPECT_SKV_ERROR(convert_llama2c_checkpoint(dir / "heads.bin", dir / "out"), ErrorCode::kParse, "heads.bin",
                   "n_heads 3", "not a valid llama2.c header");
  testing::write_file(dir / "tiny.bin", "abcd");
  EXPECT_SKV_ERROR(convert_llama2c_checkpoint(dir / "tiny.bin", dir / "out"), ErrorCode::kParse, "tiny.bin",
                   "too short");
  testing::write_file(dir / "v1.bin", std::string("24ka") + std::string(252, '\0'));
  EXPECT_SKV_ERROR(convert_llama2c_checkpoint(dir / "v1.bin", dir / "out"), ErrorCode::kUnsupported, "v1.bin",
                   "ak42");
  EXPECT_FALSE(std::filesystem::exists(dir / "out" / "config.json"));
}

TEST(Llama2c, Stories15M) {
  const std::filesystem::path bin = std::filesystem::path(SKV_MODELS_DIR) / "stories15M-raw" / "stories15M.bin";
  ASSERT_TRUE(std::filesystem::exists(bin)) << bin << " is missing: run scripts/fetch_models.sh";
  TempDir dir;
  const auto t0 = std::chrono::steady_clock::now();
  convert_llama2c_checkpoint(bin, dir / "stories15M");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 2.0) << "conversion took " << secs << " s";

  const ModelConfig c = load_hf_config(dir / "stories15M" / "config.json");
  EXPECT_EQ(c.arch, Architecture::kLlama);
  EXPECT_EQ(c.dim, 288);
  EXPECT_EQ(c.hidden_dim, 768);
  EXPECT_EQ(c.n_layers, 6);
  EXPECT_EQ(c.n_q_heads, 6);
  EXPECT_EQ(c.n_kv_heads, 6);
  EXPECT_EQ(c.head_dim, 48);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.max_position_embeddings, 256);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_EQ(c.bos_token_ids, std::vector<int32_t>({1}));
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>({2}));
  EXPECT_EQ(c.parameter_count(), 15191712);

  const LoadedModel m = load_model(dir / "stories15M");
  EXPECT_EQ(m.store->tensor_count(), 2u + 6u * 9u);
  EXPECT_EQ(m.store->files()[0]->copied_bytes(), 0u);  // served straight from the mapping  // embed, norm, 9 per layer; no lm_head (tied)
  EXPECT_EQ(m.weights.embed.shape, (Shape{32000, 288}));
  EXPECT_EQ(m.weights.lm_head.data, m.weights.embed.data);
  EXPECT_EQ(m.weights.layers[5].wq.shape, (Shape{288, 288}));
  EXPECT_EQ(m.weights.layers[5].wk.shape, (Shape{288, 288}));
  EXPECT_EQ(m.weights.layers[5].w_gate.shape, (Shape{768, 288}));
  EXPECT_EQ(m.weights.layers[5].w_down.shape, (Shape{288, 768}));
  EXPECT_EQ(m.weights.layers[0].wq.dtype, DType::kF32);

  // Spot-check against the raw file: the embedding, and row 1 of head 2's wq (old row 2) in layer 3.
  std::ifstream raw(bin, std::ios::binary);
  std::vector<float> row(288);
  raw.seekg(28);
  raw.read(reinterpret_cast<char*>(row.data()), 288 * 4);
  EXPECT_EQ(std::memcmp(m.weights.embed.data, row.data(), 288 * 4), 0);
  const int64_t wq_at = 28 + 4 * (32000 * 288 + 6 * 288 + 3 * 288 * 288 + (2 * 48 + 2) * 288);
  raw.seekg(wq_at);
  raw.read(reinterpret_cast<char*>(row.data()), 288 * 4);
  EXPECT_EQ(std::memcmp(m.weights.layers[3].wq.ptr<float>() + (2 * 48 + 1) * 288, row.data(), 288 * 4), 0);
}

}  // namespace
}  // namespace skv
