// landmark_scores (arXiv 2410.21465 §4.2): per query head, softmax over the candidate landmarks of
// q . landmark * scale; per KV head, the max over its GQA group.
#include <cmath>
#include <limits>
#include <vector>

#include "ops/cpu/cpu_ops.h"
#include "ops/shadow_ops.h"

namespace skv::cpu {

void landmark_scores(const LandmarkScoresArgs& a) {
  const int64_t n_q_heads = a.q.dim(0), hd = a.q.dim(1);
  const int64_t n_kv = a.landmarks.dim(0), n_chunks = a.landmarks.dim(1), group = n_q_heads / n_kv;
  const double scale = a.scale != 0.0f ? a.scale : 1.0 / std::sqrt(static_cast<double>(hd));
  const float* q = a.q.ptr<const float>();
  const float* lm = a.landmarks.ptr<const float>();
  const uint8_t* excluded = a.excluded.empty() ? nullptr : a.excluded.ptr<const uint8_t>();
  float* scores = a.scores.ptr<float>();
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n_kv * n_chunks; ++i) scores[i] = kNegInf;
#pragma omp parallel if (n_kv * n_chunks * group * hd > (1 << 18))
  {
    std::vector<double> logits(static_cast<size_t>(n_chunks));
#pragma omp for schedule(static)
    for (int64_t g = 0; g < n_kv; ++g) {
      for (int64_t j = 0; j < group; ++j) {
        const float* qh = q + (g * group + j) * hd;
        double max_logit = -std::numeric_limits<double>::infinity();
        for (int64_t c = 0; c < n_chunks; ++c) {
          if (excluded != nullptr && excluded[g * n_chunks + c]) continue;
          const float* l = lm + (g * n_chunks + c) * hd;
          double dot = 0.0;
          for (int64_t d = 0; d < hd; ++d) dot += static_cast<double>(qh[d]) * l[d];
          logits[static_cast<size_t>(c)] = dot * scale;
          max_logit = std::max(max_logit, dot * scale);
        }
        double denom = 0.0;
        for (int64_t c = 0; c < n_chunks; ++c) {
          if (excluded != nullptr && excluded[g * n_chunks + c]) continue;
          logits[static_cast<size_t>(c)] = std::exp(logits[static_cast<size_t>(c)] - max_logit);
          denom += logits[static_cast<size_t>(c)];
        }
        for (int64_t c = 0; c < n_chunks; ++c) {
          if (excluded != nullptr && excluded[g * n_chunks + c]) continue;
          const float p = static_cast<float>(logits[static_cast<size_t>(c)] / denom);
          float& s = scores[g * n_chunks + c];
          s = std::max(s, p);
        }
      }
    }
  }
}

}  // namespace skv::cpu
