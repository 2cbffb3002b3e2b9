// shadowkv bench: prefill and decode speed of a model on CUDA at given contexts and batch sizes, against the
// memory-bandwidth bound (weights + KV bytes read per decode step / the device-to-device copy bandwidth measured
// in the same run). A config.json alone is enough with --random-weights (generated on the device).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/device.h"
#include "cli_common.h"
#include "device_flags.h"
#include "kv/cuda_full_kv_cache.h"
#include "loader/hf_config.h"
#include "loader/model_loader.h"
#include "model/device_util.h"
#include "model/llama_model.h"
#include "model/memory_plan.h"
#include "size_flags.h"

namespace skv::cli {
namespace {

struct BenchFlags {
  std::string model;
  std::string device = "cuda";
  std::string contexts = "32k";
  std::string batches = "1";
  std::string weight_dtype = "bf16";
  std::string kv_dtype;  // empty: bf16 (CUDA's default)
  bool random_weights = false;
  uint64_t seed = 1;
  int64_t steps = 20;
  int64_t prefill_chunk = kCudaPrefillChunk;
  std::string cuda_graphs = "on";
  std::string pdl = "on";
  bool json = false;
};

struct Row {
  int64_t context = 0, batch = 0;
  bool replicated = false;
  double prefill_ms = 0, prefill_tps = 0;
  double step_ms = 0, decode_tps = 0;
  int64_t device_used = 0;
  int64_t bytes_per_step = 0;
  double bound_ms = 0, fraction = 0;
  std::string error;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Device-to-device copy bandwidth in GB/s (bytes read + written), as bench/ops/bench_common.cuh measures it.
double measure_copy_gbs(int device) {
  const size_t bytes = size_t{1} << 30;
  DeviceBuffer a(bytes, device), b(bytes, device);
  const StreamHandle s = current_stream(device);
  for (int i = 0; i < 2; ++i) copy_bytes_async(b.data(), a.data(), bytes, s);
  std::vector<double> ms;
  for (int i = 0; i < 10; ++i) {
    Event e0, e1;
    e0.record(s);
    copy_bytes_async(b.data(), a.data(), bytes, s);
    e1.record(s);
    e1.synchronize();
    ms.push_back(Event::elapsed_ms(e0, e1));
  }
  return 2.0 * static_cast<double>(bytes) / (median(ms) * 1e6);
}

void run_bench(const BenchFlags& f) {
  const DeviceId device = parse_device_flag(f.device);
  if (device.kind != DeviceKind::kCuda)
    throw Error(ErrorCode::kInvalidArgument, "bench measures the CUDA backend: pass --device cuda");
  const std::vector<int64_t> contexts = parse_count_list("--context", f.contexts, false);
  const std::vector<int64_t> batches = parse_count_list("--batch", f.batches, true);
  const DType weight_dtype = parse_weight_dtype_flag(f.weight_dtype);
  const DType kv_dtype = parse_kv_dtype_flag(f.kv_dtype, device);
  const int64_t kv_elem_bytes = static_cast<int64_t>(dtype_size(kv_dtype));
  if (f.steps < 1 || f.steps > 10000) throw Error(ErrorCode::kInvalidArgument, "--steps must be in [1, 10000]");
  if (f.prefill_chunk < 1 || f.prefill_chunk > 65536)
    throw Error(ErrorCode::kInvalidArgument, "--prefill-chunk must be in [1, 65536]");
  const auto dir = resolve_model_dir(f.model);
  const int dev = device.index;
  set_device(dev);
  const DeviceProperties& props = device_properties(dev);
  const DeviceMemoryInfo mem0 = device_memory_info(dev);
  const double copy_gbs = measure_copy_gbs(dev);
  if (!f.json)
    std::printf("device: %s, %.1f GiB (%.1f GiB free); copy bandwidth %.0f GB/s (read + write)\n", props.name.c_str(),
                static_cast<double>(mem0.total_bytes) / (1 << 30), static_cast<double>(mem0.free_bytes) / (1 << 30),
                copy_gbs);

  ModelOptions mo;
  mo.device = device;
  mo.weight_dtype = weight_dtype;
  mo.kv_dtype = kv_dtype;
  mo.prefill_chunk_tokens = f.prefill_chunk;
  if (f.cuda_graphs != "on" && f.cuda_graphs != "off")
    throw Error(ErrorCode::kInvalidArgument, "--cuda-graphs must be on or off, got '" + f.cuda_graphs + "'");
  mo.cuda_graphs = f.cuda_graphs == "on";
  if (f.pdl != "on" && f.pdl != "off")
    throw Error(ErrorCode::kInvalidArgument, "--pdl must be on or off, got '" + f.pdl + "'");
  set_programmatic_launch(f.pdl == "on");
  std::unique_ptr<LlamaModel> model;
  if (f.random_weights) {
    model = LlamaModel::with_random_weights(load_hf_config(dir / "config.json"), mo, f.seed);
  } else {
    model = std::make_unique<LlamaModel>(std::make_shared<const LoadedModel>(load_model(dir)), mo);
  }
  const ModelConfig& c = model->config();
  const int64_t weight_read = model->weight_bytes_per_token();
  const int64_t extra = 8;  // warm-up steps before the timed ones
  std::vector<Row> rows;
  for (const int64_t context : contexts) {
    const int64_t capacity = context + static_cast<int64_t>(batches.size()) * (f.steps + extra) + 1;
    // The batches of this context: "auto" is the largest that fits next to the resident weights.
    const DeviceMemoryInfo mem = device_memory_info(dev);
    MemoryPlanRequest req;
    req.context = capacity;
    req.batch = 0;
    req.weight_dtype = weight_dtype;
    req.kv_dtype = kv_dtype;
    req.prefill_chunk = f.prefill_chunk;
    req.memory_bytes = mem.free_bytes + model->resident_weight_bytes();  // the plan counts the weights again
    const MemoryPlan plan = plan_memory(c, req);
    std::vector<int64_t> bs;
    for (int64_t b : batches) {
      const int64_t v = b == 0 ? plan.max_batch : b;
      if (v > plan.max_batch || v < 1) {
        Row r;
        r.context = context;
        r.batch = v;
        MemoryPlanRequest one = req;
        one.batch = v;
        try {
          require_fits(plan_memory(c, one));
          r.error = "does not fit";
        } catch (const Error& e) {
          r.error = e.what();
        }
        rows.push_back(r);
        continue;
      }
      bs.push_back(v);
    }
    if (bs.empty()) continue;
    const int64_t max_b = *std::max_element(bs.begin(), bs.end());
    try {
      CudaFullKvCache cache(c.n_layers, c.n_q_heads, c.n_kv_heads, c.head_dim, max_b, capacity, dev, kv_dtype);
      // Prefill one sequence of `context` random tokens, timed.
      std::vector<int32_t> tokens(static_cast<size_t>(context));
      uint64_t x = 0x2545F4914F6CDD1Dull ^ static_cast<uint64_t>(context);
      for (auto& t : tokens) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t = static_cast<int32_t>(x % static_cast<uint64_t>(c.vocab_size));
      }
      std::vector<float> logits(static_cast<size_t>(max_b * c.vocab_size));
      cache.add_sequence(0, capacity);
      const StreamHandle s = current_stream(dev);
      Event p0, p1;
      p0.record(s);
      model->prefill(cache, 0, tokens, std::span<float>(logits).first(static_cast<size_t>(c.vocab_size)));
      p1.record(s);
      p1.synchronize();
      const double prefill_ms = Event::elapsed_ms(p0, p1);
      // The other slots get copies of its KV (device copies), not prefills of their own.
      for (int64_t b = 1; b < max_b; ++b) {
        cache.add_sequence(b, capacity);
        cache.copy_sequence(0, b);
      }
      synchronize_device(dev);
      for (const int64_t batch : bs) {
        Row r;
        r.context = context;
        r.batch = batch;
        r.replicated = batch > 1;
        r.prefill_ms = prefill_ms;
        r.prefill_tps = static_cast<double>(context) / (prefill_ms / 1e3);
        // Each sequence goes on from where it is (an earlier batch size advanced the first ones a few tokens).
        DecodeBatch db;
        std::vector<int32_t> step_tokens;
        for (int64_t b = 0; b < batch; ++b) {
          db.seqs.push_back(b);
          db.positions.push_back(cache.length(b));
          step_tokens.push_back(static_cast<int32_t>((1000 + b) % c.vocab_size));
        }
        std::vector<double> ms;
        const std::span<float> out(logits.data(), static_cast<size_t>(batch * c.vocab_size));
        int64_t kv_read = 0;
        for (int64_t step = 0; step < f.steps + extra; ++step) {
          Event e0, e1;
          e0.record(s);
          model->decode(cache, db, step_tokens, out);
          e1.record(s);
          e1.synchronize();
          if (step >= extra) {
            ms.push_back(Event::elapsed_ms(e0, e1));
            for (int64_t p : db.positions) kv_read += c.kv_cache_bytes(p + 1, kv_elem_bytes);
          }
          for (auto& p : db.positions) ++p;
        }
        r.step_ms = median(ms);
        r.decode_tps = static_cast<double>(batch) / (r.step_ms / 1e3);
        r.bytes_per_step = weight_read + kv_read / f.steps;
        r.bound_ms = static_cast<double>(r.bytes_per_step) / (copy_gbs * 1e6);
        r.fraction = r.bound_ms / r.step_ms;
        const DeviceMemoryInfo now = device_memory_info(dev);
        r.device_used = now.total_bytes - now.free_bytes;
        rows.push_back(r);
        if (!f.json)
          std::fprintf(stderr, "context %lld batch %lld: prefill %.0f ms, decode step %.2f ms\n",
                       static_cast<long long>(context), static_cast<long long>(batch), prefill_ms, r.step_ms);
      }
    } catch (const Error& e) {
      for (const int64_t batch : bs) {
        Row r;
        r.context = context;
        r.batch = batch;
        r.error = e.what();
        rows.push_back(r);
      }
      synchronize_device(dev);
    }
  }

  if (f.json) {
    nlohmann::json j;
    j["device"] = props.name;
    j["copy_bandwidth_gbs"] = copy_gbs;
    j["weight_dtype"] = dtype_name(weight_dtype);
    j["kv_dtype"] = dtype_name(kv_dtype);
    j["cuda_graphs"] = mo.cuda_graphs;
    j["programmatic_launch"] = programmatic_launch_enabled(dev);
    j["decode_steps_from_graphs"] = model->decode_stats().replays;
    j["decode_steps_eager"] = model->decode_stats().eager_steps;
    j["random_weights"] = f.random_weights;
    j["weight_bytes_per_step"] = weight_read;
    j["steps"] = f.steps;
    j["note"] = "batch > 1: one sequence is prefilled and its KV copied into the other slots (device copies)";
    nlohmann::json arr = nlohmann::json::array();
    for (const Row& r : rows) {
      nlohmann::json o{{"context", r.context}, {"batch", r.batch}};
      if (!r.error.empty()) {
        o["error"] = r.error;
      } else {
        o.update({{"prefill_ms", r.prefill_ms}, {"prefill_tokens_per_s", r.prefill_tps},
                  {"decode_step_ms_median", r.step_ms}, {"decode_tokens_per_s", r.decode_tps},
                  {"device_memory_used_bytes", r.device_used}, {"bytes_per_step", r.bytes_per_step},
                  {"bound_ms", r.bound_ms}, {"bandwidth_fraction", r.fraction}, {"kv_replicated", r.replicated}});
      }
      arr.push_back(o);
    }
    j["results"] = arr;
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("\nweights %s (%s), KV cache %s, %lld timed decode steps after %lld warm-up; bound = (weights + KV "
              "bytes read per step) / copy bandwidth\n",
              format_gib(weight_read).c_str(), dtype_name(weight_dtype), dtype_name(kv_dtype),
              static_cast<long long>(f.steps), static_cast<long long>(extra));
  std::printf("CUDA graphs %s: %lld decode steps replayed from graphs, %lld launched op by op (warm-up included); "
              "programmatic dependent launch %s\n",
              mo.cuda_graphs ? "on" : "off", static_cast<long long>(model->decode_stats().replays),
              static_cast<long long>(model->decode_stats().eager_steps),
              programmatic_launch_enabled(dev) ? "on" : "off");
  std::printf("batch > 1: one sequence is prefilled and its KV copied into the other slots (device copies)\n\n");
  std::printf("| context | batch | prefill ms | prefill tok/s | decode step ms (median) | decode tok/s | device "
              "memory used | bound ms | of bound |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    if (!r.error.empty()) {
      std::printf("| %lld | %lld | error: %s | | | | | | |\n", static_cast<long long>(r.context),
                  static_cast<long long>(r.batch), r.error.c_str());
      continue;
    }
    std::printf("| %lld | %lld | %.0f | %.0f | %.2f | %.1f | %s | %.2f | %.2f |\n", static_cast<long long>(r.context),
                static_cast<long long>(r.batch), r.prefill_ms, r.prefill_tps, r.step_ms, r.decode_tps,
                format_gib(r.device_used).c_str(), r.bound_ms, r.fraction);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand("bench", "Benchmark prefill and decode on CUDA against the bandwidth bound");
  cmd->add_option("--model", f->model, "Model directory (with --random-weights, config.json is enough)");
  cmd->add_option("--device", f->device, "cuda or cuda:N (default cuda)");
  cmd->add_option("--context", f->contexts, "Comma-separated contexts, e.g. 32k,122k (default 32k)");
  cmd->add_option("--batch", f->batches, "Comma-separated batch sizes, or auto: as many as fit (default 1)");
  cmd->add_option("--weight-dtype", f->weight_dtype, "bf16 or f32 (default bf16)");
  cmd->add_option("--kv-dtype", f->kv_dtype, kKvDtypeHelp);
  cmd->add_flag("--random-weights", f->random_weights, "Generate the weights on the device (no safetensors needed)");
  cmd->add_option("--seed", f->seed, "Seed of the random weights (default 1)");
  cmd->add_option("--steps", f->steps, "Timed decode steps (default 20)");
  cmd->add_option("--prefill-chunk", f->prefill_chunk, "Tokens per prefill chunk (default " + std::to_string(kCudaPrefillChunk) + ")");
  cmd->add_option("--cuda-graphs", f->cuda_graphs,
                  "on (default): decode steps of up to 4 sequences with bf16 weights replay CUDA graphs; off: every "
                  "kernel launched op by op (to measure what the graphs save)");
  cmd->add_option("--pdl", f->pdl,
                  "on (default, sm_90+): the decode kernels use programmatic dependent launch, each starting while "
                  "the one before it finishes; off: ordinary launches (to measure what PDL saves)");
  cmd->add_flag("--json", f->json, "Print one JSON object instead of the table");
  cmd->callback([f] { run_bench(*f); });
}

}  // namespace skv::cli
