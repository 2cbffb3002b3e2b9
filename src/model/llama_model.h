// LlamaModel: the forward pass of Llama, Mistral and Qwen2 (they differ only in config: GQA, head_dim, q/k/v
// bias, RoPE scaling). Prefill runs a prompt chunk by chunk with exact attention; decode runs one token for
// each sequence of a batch. Attention state lives in the KvCache the caller passes in.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "backend/device.h"
#include "core/buffer.h"
#include "kv/kv_cache.h"
#include "loader/model_loader.h"

namespace skv {

struct ModelOptions {
  // Tokens per prefill chunk: bounds activation memory for long prompts. 0: default_prefill_chunk(device).
  int64_t prefill_chunk_tokens = 0;
  // Where the forward runs. kCpu: the CPU backend (f32 matrices, converted once at load, or the mmap itself).
  // kCuda: every weight uploaded once to the device; activations f32 on the device; the KV cache passed in must
  // live there too (CudaFullKvCache).
  DeviceId device{};
  // CUDA only: the dtype of the matrices and the embedding (bf16: tensor cores; f32: to compare with the CPU
  // token for token). Norms and biases stay f32.
  DType weight_dtype = DType::kBF16;
  // CUDA only: the dtype of the KV cache prompt_logits builds (bf16: half the memory, tensor-core attention at
  // head_dim 64/128; f32: with f32 weights, the CPU's numbers). Caches passed to prefill/decode carry their own
  // (CudaFullKvCache's kv_dtype). The CPU backend's cache is always f32.
  DType kv_dtype = DType::kBF16;
  // CUDA only: replay decode steps from CUDA graphs where the step allows it (bf16 weights, at most kCudaGemvMaxTokens = 4 sequences,
  // a cache whose begin_decode_step says capturable): a step is captured the second time its shape is seen, then
  // replayed with one launch for the whole step instead of 12 per layer.
  bool cuda_graphs = true;
};

// How decode steps ran (CUDA graphs), for tests and benchmarks.
struct DecodeStats {
  int64_t eager_steps = 0;   // launched op by op
  int64_t captures = 0;      // graphs captured
  int64_t replays = 0;       // steps run by replaying a graph (the capturing step included)
};

// The prefill chunk when ModelOptions leaves it 0: 512 tokens on the CPU; 2048 on CUDA, where larger GEMMs run
// closer to the tensor cores' peak (32K-token prefill of Llama-3.1-8B on an H200: 2.05 s at 512, 1.77 s at 2048,
// 1.75 s at 8192; bench/results/2026-11-26-h200-decode-graphs.md) for ~0.4 GiB more activations.
int64_t default_prefill_chunk(DeviceKind device);

// Called after each prefill chunk with (tokens done, tokens total).
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

class LlamaModel {
 public:
  explicit LlamaModel(std::shared_ptr<const LoadedModel> model, ModelOptions options = {});
  // A model of this architecture with deterministic random weights generated on options.device from `seed`
  // (uniform in +-1/sqrt(fan_in) for the matrices, +-1 for the embedding, norms 1, biases 0): for benchmarks
  // from a config.json alone. No host copy of the weights is made on CUDA.
  static std::unique_ptr<LlamaModel> with_random_weights(const ModelConfig& config, ModelOptions options,
                                                         uint64_t seed);
  ~LlamaModel();
  LlamaModel(const LlamaModel&) = delete;
  LlamaModel& operator=(const LlamaModel&) = delete;

  const ModelConfig& config() const { return model_->config; }
  const ModelOptions& options() const { return options_; }
  DeviceId device() const { return options_.device; }

  // Runs the prompt tokens of `seq` (already added to `cache`, currently holding `cache.length(seq)` tokens,
  // normally 0) through every layer and finishes its prefill. Writes the logits of the last token to
  // last_logits [vocab_size].
  void prefill(KvCache& cache, SeqId seq, std::span<const int32_t> tokens, std::span<float> last_logits,
               const ProgressFn& progress = {});

  // One decode step: tokens[b] is the newest token of batch.seqs[b], at batch.positions[b].
  // Writes logits [n_seqs, vocab_size].
  void decode(KvCache& cache, const DecodeBatch& batch, std::span<const int32_t> tokens, std::span<float> logits);

  const DecodeStats& decode_stats() const { return decode_stats_; }

  // Logits of every position of a prompt with exact attention: [n_tokens * vocab_size]. For tests and tools.
  std::vector<float> prompt_logits(std::span<const int32_t> tokens);

  // Bytes of weights one decode step reads (every matrix once, the embedding row aside).
  int64_t weight_bytes_per_token() const;
  // Bytes of weights resident on the model's device (CUDA: everything uploaded; CPU: the f32 copies made).
  int64_t resident_weight_bytes() const;

  // An owning buffer on a device: host memory on the CPU, cudaMalloc'd memory on CUDA. Zero-filled.
  class Buffer {
   public:
    Buffer() = default;
    Buffer(DeviceId device, DType dtype, Shape shape);
    void* data() const { return device_.kind == DeviceKind::kCuda ? dev_.data() : host_.data(); }
    size_t bytes() const { return device_.kind == DeviceKind::kCuda ? dev_.bytes() : host_.bytes(); }
    TensorView view() const { return TensorView(data(), dtype_, shape_, device_); }

   private:
    DeviceId device_{};
    DType dtype_ = DType::kU8;
    Shape shape_;
    HostBuffer host_;
    DeviceBuffer dev_;
  };

 private:
  struct Workspace;
  // Runs n tokens through the layers. For prefill, `seq`/`q_start` name the sequence; for decode, `batch`.
  void forward(KvCache& cache, std::span<const int32_t> tokens, std::span<const int64_t> positions, SeqId seq,
               const DecodeBatch* batch, int64_t q_start);
  // Enqueues the layers over n tokens whose ids and positions are already in the workspace.
  void run_layers(KvCache& cache, int64_t n, SeqId seq, const DecodeBatch* batch, int64_t q_start);
  void compute_logits(int64_t first_row, int64_t n_rows, float* out);
  // CUDA: final norm + lm_head of workspace rows into the device logits buffer (sized by ensure_logits).
  TensorView device_logits(int64_t first_row, int64_t n_rows);
  void ensure_logits(int64_t n_rows);
  void ensure_workspace(int64_t n_tokens);
  // CUDA decode: ids and positions through pinned memory, then graph replay, capture or eager launches.
  void decode_cuda(KvCache& cache, const DecodeBatch& batch, std::span<const int32_t> tokens, std::span<float> logits);
  bool decode_graphable(int64_t n) const;
  struct RandomTag {};
  LlamaModel(std::shared_ptr<const LoadedModel> model, ModelOptions options, RandomTag, uint64_t seed);
  void upload_weights();                    // CUDA: the loaded weights to the device
  void random_weights(uint64_t seed);       // either device
  void init_rope();
  bool on_cuda() const { return options_.device.kind == DeviceKind::kCuda; }

  // The weights as the forward pass reads them: the projections that share an input are concatenated by rows,
  // so one linear computes q, k and v, and one computes gate and up (fewer, larger matrix products: at decode
  // each is a bandwidth-bound GEMV whose efficiency grows with its size).
  struct ComputeLayer {
    TensorView attn_norm;  // [dim] f32
    TensorView wqkv;       // [q_dim + 2 * kv_dim, dim] = [w_q; w_k; w_v]
    TensorView bqkv;       // [q_dim + 2 * kv_dim] f32 = [b_q; b_k; b_v], or empty (no attention bias)
    TensorView wo;         // [dim, q_dim]
    TensorView mlp_norm;   // [dim] f32
    TensorView w_gate_up;  // [2 * hidden_dim, dim] = [w_gate; w_up]
    TensorView w_down;     // [dim, hidden_dim]
  };
  struct ComputeWeights {
    TensorView embed;       // [vocab_size, dim] (CPU: the loaded tensor, rows converted as gathered)
    TensorView final_norm;  // [dim] f32
    TensorView lm_head;     // [vocab_size, dim] (may be embed: tied)
    std::vector<ComputeLayer> layers;
  };

  std::shared_ptr<const LoadedModel> model_;
  ModelOptions options_;
  ComputeWeights weights_;              // CPU: f32 host tensors; CUDA: options_.weight_dtype matrices on the device
  std::vector<HostBuffer> converted_;   // CPU: owns the f32 copies (converted and/or concatenated matrices)
  std::vector<Buffer> owned_;           // weights on the model's device (CUDA, or random weights)
  std::vector<float> inv_freq_;         // [head_dim / 2]
  Buffer inv_freq_dev_;                 // CUDA: inv_freq_ on the device
  double position_scale_ = 1.0;
  std::unique_ptr<Workspace> ws_;
  uint64_t workspace_generation_ = 0;   // moves when a workspace or logits buffer is reallocated
  struct DecodeGraphs;
  std::unique_ptr<DecodeGraphs> graphs_;  // CUDA: created on the first decode step
  DecodeStats decode_stats_;
};

}  // namespace skv
