// Printing ShadowKV's --report diagnostics (ShadowKvCache::report(), per layer) for generate and eval.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kv/shadow_kv_cache.h"

namespace skv::cli {

// One object per layer: steps, attended_mass, chunk_oracle_mass, best_mass, top_key_hit_rate,
// output_rel_error, hit_rate (chunk reuse).
nlohmann::json report_json(const std::vector<LayerReport>& layers);

// A table of the same, with a legend and a mean row, under `title`.
void print_report(std::FILE* out, const std::string& title, const std::vector<LayerReport>& layers);

}  // namespace skv::cli
