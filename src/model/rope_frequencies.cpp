// RoPE frequencies. llama3 scaling (Llama-3.1): long wavelengths are slowed by `factor`, short ones kept, and
// the band between them interpolated smoothly, as Hugging Face's _compute_llama3_parameters defines it.
#include "model/rope_frequencies.h"

#include <cmath>
#include <numbers>

namespace skv {

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  const RopeScaling& s = c.rope_scaling;
  const double orig = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = orig / s.low_freq_factor;
  const double high_freq_wavelen = orig / s.high_freq_factor;
  for (int64_t i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / static_cast<double>(c.head_dim));
    if (s.type == RopeScalingType::kLlama3) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_freq_wavelen) {
        f /= s.factor;
      } else if (wavelen >= high_freq_wavelen) {
        const double smooth = (orig / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1.0 - smooth) * f / s.factor + smooth * f;
      }
    }
    inv[static_cast<size_t>(i)] = static_cast<float>(f);
  }
  return inv;
}

double rope_position_scale(const ModelConfig& c) {
  return c.rope_scaling.type == RopeScalingType::kLinear ? 1.0 / c.rope_scaling.factor : 1.0;
}

}  // namespace skv
