// The CUDA twins of the ops (ops.h), built with -DSKV_CUDA=ON. Arguments were validated by the dispatching
// function in ops.cpp (same device, contiguous, dtypes and shapes). Every function enqueues on the thread's
// current stream of the tensors' device (backend/device.h) and returns without synchronizing, except
// sample_tokens into a CPU `out`, which waits for the result.
#pragma once

#include <cstdint>

#include "ops/ops.h"

namespace skv::cuda {

void embedding(const EmbeddingArgs& args);
void rms_norm(const RmsNormArgs& args);
void linear(const LinearArgs& args);
void rope(const RopeArgs& args);
void swiglu(const SwigluArgs& args);
void split_qkv_rope(const SplitQkvRopeArgs& args);
void add(const AddArgs& args);
void attention_prefill(const AttentionPrefillArgs& args);
void attention_decode(const AttentionDecodeArgs& args);
void attention_decode_batch(const AttentionDecodeBatchArgs& args);
void sample_tokens(const SampleTokensArgs& args);
void cast_rows(const CastRowsArgs& args);

int64_t attention_decode_batch_workspace_floats(int64_t n_seqs, int64_t n_q_heads, int64_t n_kv_heads,
                                                int64_t head_dim, int64_t max_length, int device);

// linear with an explicit path, for the benchmark: 0 = automatic (as linear), 1 = cuBLAS, 2 = the small-n
// kernel (n <= 8, bf16 w, in_features % 8 == 0; else cuBLAS). Path 0 takes the kernel up to kCudaGemvMaxTokens.
void linear_with_path(const LinearArgs& args, int path);
// The small-n kernel's CTA shape (rows, steps in flight, warps; linear.cu's kGemvShapes*): 0 = the default,
// 1-4 the alternatives bench_linear sweeps. Initialized from the environment variable SKV_GEMV_SHAPE (so a
// whole-model benchmark can run another shape); nothing but benchmarks should set it.
int& gemv_shape_override();
// attention_prefill with an explicit kernel variant, for the benchmark and the tests: mma.sync kernels 1 = 8
// warps x 16 query rows, 2 = 4 warps x 32 query rows, 3 = as 1 with registers capped for 2 CTAs per SM (the
// default at head_dim 64); wgmma kernels (sm_90a), 2 warpgroups x 64 rows, the softmax of one K/V tile
// overlapping the previous tile's P V: 5 = K/V by cp.async, 6 = fed by a TMA producer warpgroup (the default at
// head_dim 128). Any other number is an error.
void attention_prefill_with_variant(const AttentionPrefillArgs& args, int variant);

// The attention kernels: the tensor-core ones (attention_prefill.cu, attention_decode.cu) take bf16 K/V at
// head_dim 64 or 128; the generic SIMT ones (attention_generic.cu) take f32 or bf16 K/V at any head_dim up to
// kGenericMaxHeadDim, with f32 products. attention_prefill / attention_decode(_batch) above pick by this test.
constexpr int64_t kGenericMaxHeadDim = 256;
inline bool tensor_core_attention(DType kv_dtype, int64_t head_dim) {
  return kv_dtype == DType::kBF16 && (head_dim == 64 || head_dim == 128);
}
// The generic kernels themselves, whatever the dtype and head_dim (tests and benchmarks compare them with the
// tensor-core kernels at bf16 K/V and head_dim 64/128). Same arguments and semantics as the ops.
void attention_prefill_generic(const AttentionPrefillArgs& args);
void attention_decode_batch_generic(const AttentionDecodeBatchArgs& args);
void attention_decode_generic(const AttentionDecodeArgs& args);

}  // namespace skv::cuda
