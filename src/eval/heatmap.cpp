// Rendering the depth-sweep heatmap.
#include "eval/heatmap.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"

namespace skv::eval {
namespace {

constexpr Rgb kRed{0xF0, 0x49, 0x6E}, kYellow{0xEB, 0xB8, 0x39}, kGreen{0x0C, 0xD7, 0x9F};
constexpr Rgb kInk{0x20, 0x20, 0x20}, kGray{0xDD, 0xDD, 0xDD}, kGrid{0xFF, 0xFF, 0xFF}, kMuted{0x60, 0x60, 0x60};

Rgb lerp(Rgb a, Rgb b, double t) {
  auto m = [t](uint8_t x, uint8_t y) {
    return static_cast<uint8_t>(std::lround(static_cast<double>(x) + (static_cast<double>(y) - x) * t));
  };
  return {m(a.r, b.r), m(a.g, b.g), m(a.b, b.b)};
}

std::string percent(double v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

}  // namespace

Rgb heat_color(double score) {
  const double s = std::clamp(score, 0.0, 100.0) / 100.0;
  return s < 0.5 ? lerp(kRed, kYellow, s * 2.0) : lerp(kYellow, kGreen, (s - 0.5) * 2.0);
}

Image render_heatmap(const HeatmapSpec& spec) {
  const int S = 2;                                    // font scale of labels and cell values
  const int th = Image::text_height(S);
  const size_t n_cols = spec.column_labels.size(), n_rows = spec.row_labels.size();
  if (n_cols == 0 || n_rows == 0 || spec.rows.empty()) throw Error(ErrorCode::kInvalidArgument, "empty heatmap");
  int cell_w = Image::text_width("100", S) + 16;
  for (const auto& l : spec.column_labels) cell_w = std::max(cell_w, Image::text_width(l, S) + 12);
  const int cell_h = th + 14;
  int ylabel_w = 0;
  for (const auto& l : spec.row_labels) ylabel_w = std::max(ylabel_w, Image::text_width(l, S));
  ylabel_w = std::max(ylabel_w, Image::text_width("DEPTH", S)) + 12;
  const int grid_w = cell_w * static_cast<int>(n_cols), grid_h = cell_h * static_cast<int>(n_rows);
  size_t n_panels = 0;
  for (const auto& r : spec.rows) n_panels = std::max(n_panels, r.panels.size());
  const int panel_w = std::max(ylabel_w + grid_w, Image::text_width("SHADOWKV  MEAN 100.0", S) + 8);
  const int gap = 48, margin = 24, bar_w = 18;
  const int legend_w = bar_w + 12 + Image::text_width("100", S);
  const int title_h = Image::text_height(3) + 20;
  // A task row: its title, the panel titles, the grid, the tick labels, the axis title.
  const int row_h = th + 12 + th + 10 + grid_h + 8 + th + 10 + th + 12;
  const int width = std::max(margin * 2 + static_cast<int>(n_panels) * (panel_w + gap) + legend_w,
                             margin * 2 + Image::text_width(spec.title, 3));
  const int height = margin + title_h + static_cast<int>(spec.rows.size()) * row_h + margin;
  Image img(width, height);
  img.draw_text(margin, margin, spec.title, kInk, 3);

  int y0 = margin + title_h;
  for (const HeatmapRow& row : spec.rows) {
    img.draw_text(margin, y0, row.title, kInk, S);
    const int grid_y = y0 + th + 12 + th + 10;
    for (size_t p = 0; p < row.panels.size(); ++p) {
      const HeatmapPanel& panel = row.panels[p];
      const int px = margin + static_cast<int>(p) * (panel_w + gap);
      const int gx = px + ylabel_w;
      // Panel title with the mean over the cells that have data.
      double sum = 0.0;
      int n = 0;
      for (const auto& r : panel.grid)
        for (const auto& v : r)
          if (v) {
            sum += *v;
            ++n;
          }
      char mean[48];
      std::snprintf(mean, sizeof mean, "  MEAN %.1f", n ? sum / n : 0.0);
      img.draw_text(gx, y0 + th + 12, panel.title + (n ? mean : ""), kInk, S);
      for (size_t r = 0; r < n_rows; ++r) {
        const int cy = grid_y + static_cast<int>(r) * cell_h;
        img.draw_text(gx - 8 - Image::text_width(spec.row_labels[r], S), cy + (cell_h - th) / 2, spec.row_labels[r],
                      kInk, S);
        for (size_t c = 0; c < n_cols; ++c) {
          const int cx = gx + static_cast<int>(c) * cell_w;
          const std::optional<double> v =
              r < panel.grid.size() && c < panel.grid[r].size() ? panel.grid[r][c] : std::nullopt;
          img.fill_rect(cx, cy, cell_w, cell_h, v ? heat_color(*v) : kGray);
          img.rect_outline(cx, cy, cell_w, cell_h, kGrid);
          const std::string label = v ? percent(*v) : "-";
          img.draw_text(cx + (cell_w - Image::text_width(label, S)) / 2, cy + (cell_h - th) / 2, label,
                        v ? kInk : kMuted, S);
        }
      }
      const int ty = grid_y + grid_h + 8;
      for (size_t c = 0; c < n_cols; ++c) {
        const int cx = gx + static_cast<int>(c) * cell_w;
        img.draw_text(cx + (cell_w - Image::text_width(spec.column_labels[c], S)) / 2, ty, spec.column_labels[c],
                      kInk, S);
      }
      img.draw_text(gx + (grid_w - Image::text_width("CONTEXT", S)) / 2, ty + th + 10, "CONTEXT", kMuted, S);
      img.draw_text(px, y0 + th + 12, "DEPTH", kMuted, S);
    }
    // The colour bar at the right.
    const int bx = margin + static_cast<int>(n_panels) * (panel_w + gap);
    for (int i = 0; i < grid_h; ++i)
      img.fill_rect(bx, grid_y + i, bar_w, 1, heat_color(100.0 * (1.0 - static_cast<double>(i) / std::max(1, grid_h - 1))));
    img.rect_outline(bx, grid_y, bar_w, grid_h, kInk);
    img.draw_text(bx + bar_w + 6, grid_y, "100", kInk, S);
    img.draw_text(bx + bar_w + 6, grid_y + (grid_h - th) / 2, "50", kInk, S);
    img.draw_text(bx + bar_w + 6, grid_y + grid_h - th, "0", kInk, S);
    y0 += row_h;
  }
  return img;
}

HeatmapSpec sweep_heatmap(const EvalPlan& plan, const Summary& summary, const std::string& title) {
  HeatmapSpec spec;
  spec.title = title;
  for (int64_t c : plan.contexts) spec.column_labels.push_back(format_context_length(c));
  for (double d : plan.depths) spec.row_labels.push_back(percent(d * 100.0) + "%");
  for (const std::string& task : plan.tasks) {
    HeatmapRow row;
    row.title = task;
    for (AttentionKind m : plan.methods) {
      HeatmapPanel panel;
      panel.title = attention_kind_name(m);
      panel.grid.assign(plan.depths.size(), std::vector<std::optional<double>>(plan.contexts.size()));
      for (const Cell& cell : summary.cells) {
        if (cell.task != task || cell.method != panel.title || !cell.depth || cell.samples == 0) continue;
        const auto ci = std::find(plan.contexts.begin(), plan.contexts.end(), cell.context) - plan.contexts.begin();
        size_t di = 0;
        for (size_t k = 0; k < plan.depths.size(); ++k)
          if (std::abs(plan.depths[k] - *cell.depth) < std::abs(plan.depths[di] - *cell.depth)) di = k;
        if (ci < static_cast<long>(plan.contexts.size())) panel.grid[di][static_cast<size_t>(ci)] = cell.score;
      }
      row.panels.push_back(std::move(panel));
    }
    spec.rows.push_back(std::move(row));
  }
  return spec;
}

}  // namespace skv::eval
