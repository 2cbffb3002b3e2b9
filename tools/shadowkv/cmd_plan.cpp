// shadowkv plan: the device memory a model needs at a context (weights, KV cache in bf16 or f32, workspaces) and
// the largest batch that fits. Works without a GPU given --memory-gib (it always plans the CUDA backend, so
// --kv-dtype bf16 is fine with --device cpu).
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "device_flags.h"
#include "loader/hf_config.h"
#include "model/device_util.h"
#include "model/memory_plan.h"
#include "size_flags.h"

namespace skv::cli {
namespace {

struct PlanFlags {
  std::string model;
  std::string context;
  std::string batch = "auto";
  std::string device = "cpu";
  std::string weight_dtype = "bf16";
  std::string kv_dtype = "bf16";
  double memory_gib = 0;
  int64_t prefill_chunk = kCudaPrefillChunk;
  bool json = false;
};

void run_plan(const PlanFlags& f) {
  if (f.context.empty()) throw Error(ErrorCode::kInvalidArgument, "--context is required (e.g. --context 128k)");
  const int64_t context = parse_token_count("--context", f.context);
  const int64_t batch = f.batch == "auto" ? 0 : parse_token_count("--batch", f.batch);
  const DType weight_dtype = parse_weight_dtype_flag(f.weight_dtype);
  const DType kv_dtype = parse_kv_dtype_flag(f.kv_dtype);
  if (f.memory_gib < 0 || f.memory_gib > 1e6)
    throw Error(ErrorCode::kInvalidArgument, "--memory-gib must be positive, got " + std::to_string(f.memory_gib));
  if (f.prefill_chunk < 1 || f.prefill_chunk > 65536)
    throw Error(ErrorCode::kInvalidArgument, "--prefill-chunk must be in [1, 65536]");
  const DeviceId device = parse_device_flag(f.device);
  if (f.memory_gib == 0 && device.kind != DeviceKind::kCuda)
    throw Error(ErrorCode::kInvalidArgument,
                "plan needs the device memory: pass --memory-gib (e.g. 80) or --device cuda (free memory now)");
  const auto dir = resolve_model_dir(f.model);
  const ModelConfig c = load_hf_config(dir / "config.json");
  MemoryPlanRequest req;
  req.context = context;
  req.batch = batch;
  req.weight_dtype = weight_dtype;
  req.kv_dtype = kv_dtype;
  req.prefill_chunk = f.prefill_chunk;
  std::string source = "--memory-gib";
  if (f.memory_gib > 0) {
    req.memory_bytes = static_cast<int64_t>(f.memory_gib * static_cast<double>(int64_t{1} << 30));
  } else {
    req.memory_bytes = device_memory_info(device.index).free_bytes;
    source = "free on " + device_name(device);
  }
  const MemoryPlan p = plan_memory(c, req);
  if (f.json) {
    nlohmann::json j{{"context", p.context},
                     {"batch", p.batch},
                     {"weight_dtype", dtype_name(weight_dtype)},
                     {"kv_dtype", dtype_name(kv_dtype)},
                     {"weight_bytes", p.weight_bytes},
                     {"kv_bytes_per_sequence", p.kv_bytes_per_sequence},
                     {"kv_bytes", p.kv_bytes},
                     {"workspace_bytes", p.workspace_bytes},
                     {"total_bytes", p.total_bytes},
                     {"memory_bytes", p.memory_bytes},
                     {"memory_source", source},
                     {"margin_bytes", p.margin_bytes},
                     {"max_batch", p.max_batch},
                     {"fits", p.fits()}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("model:           %s\n", dir.string().c_str());
  std::printf("context:         %lld tokens per sequence\n", static_cast<long long>(p.context));
  std::printf("weights:         %s (%.2f GB, matrices %s, norms f32)\n", format_gib(p.weight_bytes).c_str(),
              static_cast<double>(p.weight_bytes) / 1e9, dtype_name(weight_dtype));
  std::printf("KV cache:        %s per sequence (%s)\n", format_gib(p.kv_bytes_per_sequence).c_str(),
              dtype_name(kv_dtype));
  std::printf("batch:           %lld%s -> KV %s, workspace %s\n", static_cast<long long>(p.batch),
              batch == 0 ? " (auto: as many as fit)" : "", format_gib(p.kv_bytes).c_str(),
              format_gib(p.workspace_bytes).c_str());
  std::printf("total:           %s\n", format_gib(p.total_bytes).c_str());
  std::printf("device memory:   %s (%s), margin %s\n", format_gib(p.memory_bytes).c_str(), source.c_str(),
              format_gib(p.margin_bytes).c_str());
  std::printf("largest batch:   %lld at %lld tokens\n", static_cast<long long>(p.max_batch),
              static_cast<long long>(p.context));
  std::printf("fits:            %s\n", p.fits() ? "yes" : "no");
}

}  // namespace

void add_plan_command(CLI::App& app) {
  auto f = std::make_shared<PlanFlags>();
  CLI::App* cmd = app.add_subcommand("plan", "Plan device memory: weights, KV cache, workspace, largest batch");
  cmd->add_option("--model", f->model, "Model directory (config.json is enough; default: stories15M)");
  cmd->add_option("--context", f->context, "Tokens per sequence, e.g. 131072 or 128k (required)");
  cmd->add_option("--batch", f->batch, "Sequences, or auto: as many as fit (default auto)");
  cmd->add_option("--device", f->device, "cuda: use the free memory of the GPU (default cpu: needs --memory-gib)");
  cmd->add_option("--memory-gib", f->memory_gib, "Device memory to plan for, in GiB (e.g. 80)");
  cmd->add_option("--weight-dtype", f->weight_dtype, "bf16 or f32 (default bf16)");
  cmd->add_option("--kv-dtype", f->kv_dtype,
                  "KV cache dtype of the CUDA backend planned for: bf16 (default) or f32 (4 bytes per element)");
  cmd->add_option("--prefill-chunk", f->prefill_chunk, "Tokens per prefill chunk (default " + std::to_string(kCudaPrefillChunk) + ", as on CUDA)");
  cmd->add_flag("--json", f->json, "Print JSON");
  cmd->callback([f] { run_plan(*f); });
}

}  // namespace skv::cli
