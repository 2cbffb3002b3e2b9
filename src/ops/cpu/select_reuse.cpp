// select_reuse (arXiv 2410.21465 §4.2, cache reuse): chunks selected again stay in their slots; only the
// missing ones are assigned (in ascending order) to the freed slots (in ascending slot order).
#include <algorithm>
#include <vector>

#include "ops/cpu/cpu_ops.h"
#include "ops/shadow_ops.h"

namespace skv::cpu {

void select_reuse(const SelectReuseArgs& a) {
  const int64_t n_kv = a.selected.dim(0), k = a.selected.dim(1);
  std::vector<int64_t> missing, free_slots;
  for (int64_t h = 0; h < n_kv; ++h) {
    const int64_t* sel = a.selected.ptr<const int64_t>() + h * k;  // ascending
    int64_t* slots = a.slots.ptr<int64_t>() + h * k;
    uint8_t* fetch = a.fetch.ptr<uint8_t>() + h * k;
    std::vector<uint8_t> resident(static_cast<size_t>(k), 0);  // resident[i]: sel[i] is in some slot
    free_slots.clear();
    for (int64_t j = 0; j < k; ++j) {
      fetch[j] = 0;
      const int64_t* it = std::lower_bound(sel, sel + k, slots[j]);
      if (slots[j] >= 0 && it != sel + k && *it == slots[j] && !resident[static_cast<size_t>(it - sel)]) {
        resident[static_cast<size_t>(it - sel)] = 1;
      } else {
        free_slots.push_back(j);
      }
    }
    missing.clear();
    for (int64_t i = 0; i < k; ++i)
      if (!resident[static_cast<size_t>(i)]) missing.push_back(sel[i]);
    SKV_ASSERT(missing.size() == free_slots.size());
    for (size_t m = 0; m < missing.size(); ++m) {
      slots[free_slots[m]] = missing[m];
      fetch[free_slots[m]] = 1;
    }
    a.hits.ptr<int64_t>()[h] = k - static_cast<int64_t>(missing.size());
  }
}

}  // namespace skv::cpu
