// The CPU implementations of every op: the reference the CUDA twins are tested against, and the CPU backend.
// Arguments were validated by the dispatching function in ops.cpp.
#pragma once

#include "ops/ops.h"

namespace skv::cpu {

void embedding(const EmbeddingArgs& args);
void rms_norm(const RmsNormArgs& args);
void linear(const LinearArgs& args);
void rope(const RopeArgs& args);
void swiglu(const SwigluArgs& args);
void split_qkv_rope(const SplitQkvRopeArgs& args);
void add(const AddArgs& args);
void attention_prefill(const AttentionPrefillArgs& args);
void attention_decode(const AttentionDecodeArgs& args);

// Reads element i of a f32/f16/bf16 vector as float.
float load_as_f32(const TensorView& t, int64_t i);

}  // namespace skv::cpu

// The ShadowKV ops (ops/shadow_ops.h).
namespace skv {
struct LowrankFactorizeArgs;
struct LandmarkMeansArgs;
struct OutlierChunksArgs;
struct LandmarkScoresArgs;
struct TopkChunksArgs;
struct SelectReuseArgs;
struct GatherChunksArgs;
struct RebuildKeysArgs;
struct AttendSparseArgs;
}  // namespace skv

namespace skv::cpu {

void lowrank_factorize(const LowrankFactorizeArgs& args);
void landmark_means(const LandmarkMeansArgs& args);
void outlier_chunks(const OutlierChunksArgs& args);
void landmark_scores(const LandmarkScoresArgs& args);
void topk_chunks(const TopkChunksArgs& args);
void select_reuse(const SelectReuseArgs& args);
void gather_chunks(const GatherChunksArgs& args);
void rebuild_keys(const RebuildKeysArgs& args);
void attend_sparse(const AttendSparseArgs& args);

}  // namespace skv::cpu

// The CUDA backend's new ops (ops.h): the batched decode step and the sampler.
namespace skv::cpu {

void attention_decode_batch(const AttentionDecodeBatchArgs& args);
void sample_tokens(const SampleTokensArgs& args);

}  // namespace skv::cpu

namespace skv::cpu {
void cast_rows(const CastRowsArgs& args);
}  // namespace skv::cpu
