// sample_tokens on CUDA, with Sampler's semantics (see ops.h).
//  - Greedy rows: one block per row, block-wide argmax (ties to the lower id).
//  - Sampled rows: one global stable radix sort (CUB) of (row, logit descending) keys with the ids as values,
//    so each row's candidates come out in Sampler's order (equal logits keep ascending ids); then one block per
//    row walks its sorted candidates in chunks of 1024 with double-precision block scans: the top-k prefix,
//    p_i = exp((l_i - l_max) / T), the top-p cut where the running mass first reaches top_p, and the inverse CDF
//    at uniform * (kept mass). Sums differ from Sampler's sequential ones only in rounding order.
// The per-row parameters are copied to the device with the row list (cudaMemcpyAsync from pageable memory
// returns once the host buffer has been read).
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include <vector>

#include "ops/cuda/common.cuh"
#include "ops/cuda/cuda_ops.h"

namespace skv::cuda {
namespace {

constexpr int kThreads = 1024;

struct Job {
  int32_t row;
  int32_t keep;  // top-k limit already applied: min(top_k or vocab, vocab)
  float temperature;
  float top_p;
  double uniform;
};

// Ascending order of the returned key = descending logit; -0 and +0 are one value.
__device__ __forceinline__ uint32_t descending_key(float f) {
  uint32_t u = __float_as_uint(f + 0.0f);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // ascending in f
  return ~u;
}

__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* __restrict__ logits, int64_t vocab,
                                                          const Job* __restrict__ jobs, int32_t* __restrict__ out) {
  const Job job = jobs[blockIdx.x];
  const float* row = logits + static_cast<int64_t>(job.row) * vocab;
  float best = row[0];
  int64_t best_i = 0;
  // Each thread sees ascending ids: a strictly greater value replaces (ties keep the lower id), as argmax().
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float v = row[i];
    if (v > best) {
      best = v;
      best_i = i;
    }
  }
  // Thread 0 started from element 0 too, so every thread holds a valid candidate.
  __shared__ float s_val[32];
  __shared__ int64_t s_idx[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  auto better = [](float v, int64_t i, float bv, int64_t bi) { return v > bv || (v == bv && i < bi); };
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_xor_sync(0xffffffffu, best, o);
    const int64_t i = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (better(v, i, best, best_i)) {
      best = v;
      best_i = i;
    }
  }
  if (lane == 0) {
    s_val[warp] = best;
    s_idx[warp] = best_i;
  }
  __syncthreads();
  if (warp == 0) {
    const int n_warps = blockDim.x / 32;
    best = lane < n_warps ? s_val[lane] : s_val[0];
    best_i = lane < n_warps ? s_idx[lane] : s_idx[0];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float v = __shfl_xor_sync(0xffffffffu, best, o);
      const int64_t i = __shfl_xor_sync(0xffffffffu, best_i, o);
      if (better(v, i, best, best_i)) {
        best = v;
        best_i = i;
      }
    }
    if (lane == 0) out[job.row] = static_cast<int32_t>(best_i);
  }
}

// keys[j * vocab + i] = (j << 32) | descending_key(logit), values = i, for sampled job j.
__global__ void build_keys_kernel(const float* __restrict__ logits, int64_t vocab, const Job* __restrict__ jobs,
                                  int n_jobs, uint64_t* __restrict__ keys, int32_t* __restrict__ ids) {
  const int64_t total = static_cast<int64_t>(n_jobs) * vocab;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t j = idx / vocab, i = idx % vocab;
    const float v = logits[static_cast<int64_t>(jobs[j].row) * vocab + i];
    keys[idx] = (static_cast<uint64_t>(j) << 32) | descending_key(v);
    ids[idx] = static_cast<int32_t>(i);
  }
}

__global__ void __launch_bounds__(kThreads) walk_kernel(const float* __restrict__ logits, int64_t vocab,
                                                        const Job* __restrict__ jobs,
                                                        const int32_t* __restrict__ sorted_ids,
                                                        int32_t* __restrict__ out) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  using Scan = cub::BlockScan<double, kThreads>;
  __shared__ union {
    typename Reduce::TempStorage reduce;
    typename Scan::TempStorage scan;
  } tmp;
  __shared__ double s_total;
  __shared__ int s_found;

  const Job job = jobs[blockIdx.x];
  const int32_t* ids = sorted_ids + static_cast<int64_t>(blockIdx.x) * vocab;
  const float* row = logits + static_cast<int64_t>(job.row) * vocab;
  const double max_logit = row[ids[0]];
  const double temperature = job.temperature;
  auto prob = [&](int64_t i) { return exp((static_cast<double>(row[ids[i]]) - max_logit) / temperature); };
  int64_t keep = job.keep;

  // total mass of the top-k candidates
  double part = 0.0;
  for (int64_t i = threadIdx.x; i < keep; i += blockDim.x) part += prob(i);
  const double total_k = Reduce(tmp.reduce).Sum(part);
  if (threadIdx.x == 0) s_total = total_k;
  __syncthreads();
  double total = s_total;

  // First index n (in sorted order) whose inclusive prefix mass / total reaches `threshold_mass` (as a
  // fraction when `fraction`, else as an absolute mass compared with `<`): chunked block scans.
  auto find_first = [&](int64_t limit, double threshold, bool fraction) -> int64_t {
    double carry = 0.0;
    for (int64_t c0 = 0; c0 < limit; c0 += blockDim.x) {
      const int64_t i = c0 + threadIdx.x;
      const double pi = i < limit ? prob(i) : 0.0;
      double incl;
      double chunk_total;
      Scan(tmp.scan).InclusiveSum(pi, incl, chunk_total);
      incl += carry;
      if (threadIdx.x == 0) s_found = -1;
      __syncthreads();
      bool hit = false;
      if (i < limit) hit = fraction ? (incl / total >= threshold) : (threshold < incl);
      if (hit) atomicMin(reinterpret_cast<unsigned int*>(&s_found), static_cast<unsigned int>(threadIdx.x));
      __syncthreads();
      const int found = s_found;
      __syncthreads();  // s_found and the scan storage are reused by the next chunk
      if (found != -1) return c0 + found;
      carry += chunk_total;
    }
    return -1;
  };

  if (job.top_p < 1.0f) {
    // Sampler: mass += p_n / total; ++n; stop once mass >= top_p (n counts the kept candidates).
    const int64_t n = find_first(keep, static_cast<double>(job.top_p), true);
    if (n >= 0) keep = n + 1;
    part = 0.0;
    for (int64_t i = threadIdx.x; i < keep; i += blockDim.x) part += prob(i);
    const double total_p = Reduce(tmp.reduce).Sum(part);
    if (threadIdx.x == 0) s_total = total_p;
    __syncthreads();
    total = s_total;
  }
  // Inverse CDF: the first i with u < (p_0 + ... + p_i), else the last kept candidate.
  const double u = job.uniform * total;
  const int64_t pick = find_first(keep, u, false);
  if (threadIdx.x == 0) out[job.row] = ids[pick >= 0 ? pick : keep - 1];
}

}  // namespace

void sample_tokens(const SampleTokensArgs& a) {
  const int64_t n_seqs = a.logits.dim(0), vocab = a.logits.dim(1);
  SKV_ASSERT_MSG(vocab <= INT32_MAX, "sample_tokens: vocab beyond int32");
  OpContext ctx(a.logits);
  const int device = a.logits.device.index;

  std::vector<Job> jobs;  // greedy first, then sampled
  jobs.reserve(static_cast<size_t>(n_seqs));
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t i = 0; i < n_seqs; ++i) {
      const TokenSamplingParams& p = a.params[static_cast<size_t>(i)];
      if ((p.temperature == 0.0f) != (pass == 0)) continue;
      Job j{};
      j.row = static_cast<int32_t>(i);
      j.keep = static_cast<int32_t>(p.top_k > 0 ? std::min<int64_t>(p.top_k, vocab) : vocab);
      j.temperature = p.temperature;
      j.top_p = p.top_p;
      j.uniform = p.uniform;
      jobs.push_back(j);
    }
  int64_t n_greedy = 0;
  while (n_greedy < n_seqs && jobs[static_cast<size_t>(n_greedy)].temperature == 0.0f) ++n_greedy;
  const int64_t n_sampled = n_seqs - n_greedy;
  SKV_ASSERT_MSG(n_sampled * vocab <= INT32_MAX, "sample_tokens: too many sampled rows for one sort");

  // Scratch layout: jobs | out (i32) | keys in/out (u64) | ids in/out (i32) | CUB temp.
  auto align = [](size_t x) { return (x + 255) & ~size_t{255}; };
  const size_t jobs_bytes = align(jobs.size() * sizeof(Job));
  const size_t out_bytes = align(static_cast<size_t>(n_seqs) * sizeof(int32_t));
  const auto n_items = static_cast<size_t>(n_sampled * vocab);
  const size_t keys_bytes = align(n_items * sizeof(uint64_t));
  const size_t ids_bytes = align(n_items * sizeof(int32_t));
  int end_bit = 32;
  while ((int64_t{1} << (end_bit - 32)) < n_sampled) ++end_bit;
  size_t cub_bytes = 0;
  if (n_sampled > 0)
    SKV_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, cub_bytes, static_cast<const uint64_t*>(nullptr),
                                                   static_cast<uint64_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                                   static_cast<int32_t*>(nullptr), static_cast<int>(n_items), 0, end_bit,
                                                   ctx.stream));
  const size_t total_bytes = jobs_bytes + out_bytes + (n_sampled > 0 ? 2 * keys_bytes + 2 * ids_bytes + align(cub_bytes) : 0);
  auto* base = static_cast<unsigned char*>(scratch(ScratchSlot::kSampling, total_bytes, device));
  auto* d_jobs = reinterpret_cast<Job*>(base);
  const bool out_on_device = a.out.device.kind == DeviceKind::kCuda;
  auto* d_out = out_on_device ? a.out.ptr<int32_t>() : reinterpret_cast<int32_t*>(base + jobs_bytes);
  SKV_CUDA_CHECK(cudaMemcpyAsync(d_jobs, jobs.data(), jobs.size() * sizeof(Job), cudaMemcpyHostToDevice, ctx.stream));

  const float* logits = a.logits.ptr<const float>();
  if (n_greedy > 0) {
    argmax_kernel<<<static_cast<unsigned>(n_greedy), kThreads, 0, ctx.stream>>>(logits, vocab, d_jobs, d_out);
    SKV_CUDA_CHECK_LAUNCH();
  }
  if (n_sampled > 0) {
    unsigned char* p = base + jobs_bytes + out_bytes;
    auto* keys_in = reinterpret_cast<uint64_t*>(p);
    auto* keys_out = reinterpret_cast<uint64_t*>(p + keys_bytes);
    auto* ids_in = reinterpret_cast<int32_t*>(p + 2 * keys_bytes);
    auto* ids_out = reinterpret_cast<int32_t*>(p + 2 * keys_bytes + ids_bytes);
    void* cub_tmp = p + 2 * keys_bytes + 2 * ids_bytes;
    const Job* d_sampled = d_jobs + n_greedy;
    build_keys_kernel<<<blocks_for(static_cast<int64_t>(n_items), 256, 132LL * 16), 256, 0, ctx.stream>>>(
        logits, vocab, d_sampled, static_cast<int>(n_sampled), keys_in, ids_in);
    SKV_CUDA_CHECK_LAUNCH();
    SKV_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(cub_tmp, cub_bytes, keys_in, keys_out, ids_in, ids_out,
                                                   static_cast<int>(n_items), 0, end_bit, ctx.stream));
    walk_kernel<<<static_cast<unsigned>(n_sampled), kThreads, 0, ctx.stream>>>(logits, vocab, d_sampled, ids_out,
                                                                              d_out);
    SKV_CUDA_CHECK_LAUNCH();
  }
  if (!out_on_device) {
    SKV_CUDA_CHECK(cudaMemcpyAsync(a.out.data, d_out, static_cast<size_t>(n_seqs) * sizeof(int32_t),
                                   cudaMemcpyDeviceToHost, ctx.stream));
    SKV_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  }
}

}  // namespace skv::cuda
