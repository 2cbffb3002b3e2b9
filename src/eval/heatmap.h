// The needle-in-a-haystack depth sweep as a picture: for each task a row of panels, one per attention method
// (full and ShadowKV side by side), each a grid of needle depth (rows, 0% = start of the haystack at the top)
// by context length (columns), coloured by accuracy from red (0) through yellow (50) to green (100), the score
// written in each cell.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "eval/harness.h"
#include "eval/png.h"

namespace skv::eval {

struct HeatmapPanel {
  std::string title;                                  // "full", "shadowkv"
  std::vector<std::vector<std::optional<double>>> grid;  // [row][column] scores in [0, 100]; none: no data
};

struct HeatmapRow {
  std::string title;  // the task
  std::vector<HeatmapPanel> panels;
};

struct HeatmapSpec {
  std::string title;
  std::vector<std::string> column_labels;  // contexts: "4K", ...
  std::vector<std::string> row_labels;     // depths: "0%", ...
  std::vector<HeatmapRow> rows;
};

Rgb heat_color(double score);  // score in [0, 100]
Image render_heatmap(const HeatmapSpec& spec);
// The sweep's grid from a summary (plan.depths must be set).
HeatmapSpec sweep_heatmap(const EvalPlan& plan, const Summary& summary, const std::string& title);

}  // namespace skv::eval
