// The device memory planner: what a model at a context and batch needs on the GPU (weights, KV cache in bf16 or
// f32, workspaces), and the largest batch that fits in the memory available. The CLI's `plan` prints it, `bench`
// resolves --batch auto with it, and `generate --device cuda` checks it before allocating anything.
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "loader/model_config.h"

namespace skv {

// Tokens per prefill chunk on CUDA and the CPU by default (default_prefill_chunk in llama_model.h says why).
inline constexpr int64_t kCudaPrefillChunk = 2048;
inline constexpr int64_t kCpuPrefillChunk = 512;

// Bytes of the weights on the device: the matrices and the embedding in `matrix_dtype` (lm_head once when tied),
// norms and biases in f32.
int64_t model_weight_bytes(const ModelConfig& config, DType matrix_dtype);
// Bytes of the full KV cache of one sequence of n_tokens: K and V of every layer, dtype_size(kv_dtype) bytes per
// element (bf16: 2, f32: 4; the CudaFullKvCache slabs).
int64_t kv_bytes_per_sequence(const ModelConfig& config, int64_t n_tokens, DType kv_dtype = DType::kBF16);
// Bytes of the forward's workspaces: activations of max(prefill_chunk, batch) rows, the linear op's bf16 copy of
// x, the logits of max(batch, 1) rows, and the decode attention's split partials (an upper bound).
int64_t workspace_bytes(const ModelConfig& config, int64_t prefill_chunk, int64_t batch, int64_t context);
// What is kept free for the CUDA context, cuBLAS and fragmentation: max(1.5 GiB, 2% of the memory).
int64_t default_margin_bytes(int64_t memory_bytes);

struct MemoryPlanRequest {
  int64_t context = 0;                 // tokens per sequence (prompt + generated), >= 1
  int64_t batch = 1;                   // sequences; 0: as many as fit
  DType weight_dtype = DType::kBF16;
  DType kv_dtype = DType::kBF16;       // the CUDA KV cache's: bf16 or f32
  int64_t prefill_chunk = kCudaPrefillChunk;  // the planner plans device memory
  int64_t memory_bytes = 0;            // device memory available (free memory, or an override)
  int64_t margin_bytes = -1;           // -1: default_margin_bytes(memory_bytes)
};

struct MemoryPlan {
  int64_t context = 0;
  int64_t batch = 0;                   // the batch asked for, or max_batch for "as many as fit"
  int64_t weight_bytes = 0;
  int64_t kv_bytes_per_sequence = 0;
  int64_t kv_bytes = 0;                // batch sequences
  int64_t workspace_bytes = 0;         // at this batch
  int64_t total_bytes = 0;             // weights + KV + workspace
  int64_t memory_bytes = 0;
  int64_t margin_bytes = 0;
  int64_t max_batch = 0;               // the largest batch at this context that fits (0: not even one)
  bool fits() const { return batch >= 1 && total_bytes <= memory_bytes - margin_bytes; }
};

MemoryPlan plan_memory(const ModelConfig& config, const MemoryPlanRequest& request);
// Throws Error(kResource) naming every number when the plan does not fit.
void require_fits(const MemoryPlan& plan);

std::string format_gib(int64_t bytes);  // "16.00 GiB"

}  // namespace skv
