// The testbed model (models/testbed, our own long-context model): the engine's fp32 logits at 8K tokens agree
// with PyTorch's (tools/testbed/make_reference_logits.py wrote the reference) within 1e-4.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "loader/model_loader.h"
#include "model/llama_model.h"

namespace skv {
namespace {

struct Reference {
  std::vector<int32_t> tokens;
  std::vector<int32_t> positions;
  int32_t vocab = 0;
  std::vector<float> logits;  // [positions, vocab]
};

Reference read_reference(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "missing " << path;
  int32_t header[3] = {0, 0, 0};
  in.read(reinterpret_cast<char*>(header), sizeof header);
  Reference r;
  r.vocab = header[1];
  r.tokens.resize(static_cast<size_t>(header[0]));
  r.positions.resize(static_cast<size_t>(header[2]));
  r.logits.resize(r.positions.size() * static_cast<size_t>(r.vocab));
  in.read(reinterpret_cast<char*>(r.tokens.data()), static_cast<std::streamsize>(r.tokens.size() * 4));
  in.read(reinterpret_cast<char*>(r.positions.data()), static_cast<std::streamsize>(r.positions.size() * 4));
  in.read(reinterpret_cast<char*>(r.logits.data()), static_cast<std::streamsize>(r.logits.size() * 4));
  EXPECT_TRUE(in) << path << " is truncated";
  return r;
}

TEST(Testbed, LogitsMatchPyTorchAt8kTokens) {
  const std::filesystem::path src = SKV_SOURCE_DIR;
  const Reference ref = read_reference(src / "tests" / "testbed" / "reference_logits_8k.bin");
  ASSERT_EQ(ref.tokens.size(), 8192u);
  auto loaded = std::make_shared<const LoadedModel>(load_model(src / "models" / "testbed"));
  ASSERT_EQ(loaded->config.vocab_size, ref.vocab);
  LlamaModel model(loaded);
  const std::vector<float> logits = model.prompt_logits(ref.tokens);
  double worst = 0.0;
  for (size_t i = 0; i < ref.positions.size(); ++i) {
    const float* got = logits.data() + static_cast<size_t>(ref.positions[i]) * static_cast<size_t>(ref.vocab);
    const float* want = ref.logits.data() + i * static_cast<size_t>(ref.vocab);
    double max_diff = 0.0, max_ref = 0.0;
    for (int32_t v = 0; v < ref.vocab; ++v) {
      ASSERT_TRUE(std::isfinite(got[v]));
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(got[v]) - want[v]));
      max_ref = std::max(max_ref, std::fabs(static_cast<double>(want[v])));
    }
    const double rel = max_diff / max_ref;  // max |got - want| over the largest |logit| of that position
    worst = std::max(worst, rel);
    EXPECT_LE(rel, 1e-4) << "position " << ref.positions[i];
  }
  std::printf("[ testbed ] worst relative logit error over %zu positions at 8K tokens: %.2e\n", ref.positions.size(),
              worst);
}

}  // namespace
}  // namespace skv
