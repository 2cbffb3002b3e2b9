#include "shadow_report.h"

namespace skv::cli {

nlohmann::json report_json(const std::vector<LayerReport>& layers) {
  nlohmann::json out = nlohmann::json::array();
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerReport& r = layers[l];
    out.push_back({{"layer", l},
                   {"steps", r.steps},
                   {"attended_mass", r.mean_attended_mass()},
                   {"chunk_oracle_mass", r.mean_chunk_oracle_mass()},
                   {"best_mass", r.mean_best_mass()},
                   {"top_key_hit_rate", r.top_key_hit_rate()},
                   {"output_rel_error", r.mean_output_error()},
                   {"hit_rate", r.hit_rate()},
                   {"calibrated_sequences", r.calibrated_sequences},
                   {"exact_sequences", r.exact_sequences}});
  }
  return out;
}

void print_report(std::FILE* out, const std::string& title, const std::vector<LayerReport>& layers) {
  std::fprintf(out, "%s\n", title.c_str());
  std::fprintf(out,
               "  (means over decode steps and query heads; mass = share of the exact attention weight on the keys "
               "attended: by the landmarks' selection | by the best chunks of the same budget | by the best keys "
               "of the same count; top key = the highest-weight key was attended; reuse = selected chunks already "
               "resident)\n");
  std::fprintf(out, "%5s %7s %9s %12s %9s %8s %14s %6s\n", "layer", "steps", "attended", "chunk oracle", "best",
               "top key", "output rel err", "reuse");
  double mass = 0, oracle = 0, best = 0, top = 0, err = 0, reuse = 0;
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerReport& r = layers[l];
    std::fprintf(out, "%5zu %7lld %9.4f %12.4f %9.4f %8.3f %14.4f %6.3f\n", l, static_cast<long long>(r.steps),
                 r.mean_attended_mass(), r.mean_chunk_oracle_mass(), r.mean_best_mass(), r.top_key_hit_rate(),
                 r.mean_output_error(), r.hit_rate());
    mass += r.mean_attended_mass();
    oracle += r.mean_chunk_oracle_mass();
    best += r.mean_best_mass();
    top += r.top_key_hit_rate();
    err += r.mean_output_error();
    reuse += r.hit_rate();
  }
  const double n = layers.empty() ? 1.0 : static_cast<double>(layers.size());
  std::fprintf(out, "%5s %7s %9.4f %12.4f %9.4f %8.3f %14.4f %6.3f\n", "mean", "", mass / n, oracle / n, best / n,
               top / n, err / n, reuse / n);
  // --dense-capture: which layers the first decode steps switched to exact attention, in how many sequences.
  std::string chosen;
  for (size_t l = 0; l < layers.size(); ++l)
    if (layers[l].calibrated_sequences > 0)
      chosen += " " + std::to_string(l) + ":" + std::to_string(layers[l].exact_sequences) + "/" +
                std::to_string(layers[l].calibrated_sequences);
  if (!chosen.empty())
    std::fprintf(out, "  --dense-capture turned exact (layer: sequences / sequences measured):%s\n", chosen.c_str());
}

}  // namespace skv::cli
