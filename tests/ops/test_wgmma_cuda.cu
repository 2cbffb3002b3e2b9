// The wgmma building blocks of the prefill attention (src/ops/cuda/wgmma.cuh) against a float64 product on the
// host: the 128-byte swizzled layout written by sw128_offset, the matrix descriptors (K-major operands stepped
// 16 columns at a time across two 64-column atoms; an N-major operand stepped 16 rows at a time), the two
// instruction shapes the kernels issue, and the accumulator / register-A fragment layouts (m16n8k16's). One
// warpgroup computes C[64 x 128] = A[64 x 128] B[128 x 128]^T from shared memory, then O[64 x 128] = P V with P =
// bf16(C / 64) from registers and V N-major: the attention kernel's two products at head_dim 128.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ops/cuda/common.cuh"
#include "ops/cuda/wgmma.cuh"
#include "testing/cuda_testing.h"

namespace skv {
namespace {

constexpr int kM = 64, kK = 128, kN = 128;  // A[kM x kK], B[kN x kK], V[kK(keys) x kN]

__global__ void wgmma_products(const __nv_bfloat16* a, const __nv_bfloat16* b, const __nv_bfloat16* v, float* c,
                               float* o) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using namespace skv::cuda;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t raw = smem_addr(smem_raw), pad = (1024u - (raw & 1023u)) & 1023u;
  unsigned char* ga = smem_raw + pad;            // [2 atoms][64 rows][128 B]
  unsigned char* gb = ga + kM * kK * 2;          // [2 atoms][128 rows][128 B]
  unsigned char* gv = gb + kN * kK * 2;          // [2 atoms][128 keys][128 B]
  const uint32_t sa = raw + pad, sb = sa + kM * kK * 2, sv = sb + kN * kK * 2;
  for (int i = threadIdx.x; i < kM * 16; i += 128)
    *reinterpret_cast<uint4*>(ga + sw128_offset(i / 16, i % 16, kM)) = reinterpret_cast<const uint4*>(a)[i];
  for (int i = threadIdx.x; i < kN * 16; i += 128) {
    *reinterpret_cast<uint4*>(gb + sw128_offset(i / 16, i % 16, kN)) = reinterpret_cast<const uint4*>(b)[i];
    *reinterpret_cast<uint4*>(gv + sw128_offset(i / 16, i % 16, kK)) = reinterpret_cast<const uint4*>(v)[i];
  }
  fence_proxy_async_shared();
  __syncthreads();

  float s[kN / 8][4];
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kK / 16; ++kk)
    wgmma_m64n128k16_ss(s, sw128_desc(sa + (kk >> 2) * (kM * 128) + (kk & 3) * 32, 16, 1024),
                        sw128_desc(sb + (kk >> 2) * (kN * 128) + (kk & 3) * 32, 16, 1024), kk > 0);
  wgmma_commit();
  wgmma_wait<0>();
  wgmma_fence_registers(s);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  for (int j = 0; j < kN / 8; ++j)
    for (int e = 0; e < 4; ++e) c[(warp * 16 + g + 8 * (e >> 1)) * kN + 8 * j + 2 * t + (e & 1)] = s[j][e];

  uint32_t p[kK / 16][4];
  for (int kk = 0; kk < kK / 16; ++kk) {
    p[kk][0] = pack_bf16x2(s[2 * kk][0] / 64, s[2 * kk][1] / 64);
    p[kk][1] = pack_bf16x2(s[2 * kk][2] / 64, s[2 * kk][3] / 64);
    p[kk][2] = pack_bf16x2(s[2 * kk + 1][0] / 64, s[2 * kk + 1][1] / 64);
    p[kk][3] = pack_bf16x2(s[2 * kk + 1][2] / 64, s[2 * kk + 1][3] / 64);
  }
  float acc[kN / 8][4];
  for (int j = 0; j < kN / 8; ++j)
    for (int e = 0; e < 4; ++e) acc[j][e] = 0.0f;
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kK / 16; ++kk)
    wgmma_m64n128k16_rs_bt(acc, p[kk], sw128_desc(sv + kk * (16 * 128), kK * 128, 1024), 1);
  wgmma_commit();
  wgmma_wait<0>();
  wgmma_fence_registers(acc);
  for (int j = 0; j < kN / 8; ++j)
    for (int e = 0; e < 4; ++e) o[(warp * 16 + g + 8 * (e >> 1)) * kN + 8 * j + 2 * t + (e & 1)] = acc[j][e];
#endif
}

TEST(WgmmaCuda, SwizzledDescriptorsAndFragmentsMatchFloat64) {
  SKV_REQUIRE_CUDA_OR_SKIP();
  // fresh random data (bf16-exact), never zeros
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>((state >> 40) & 0xFFFF) / 32768.0f - 1.0f;
  };
  auto fill = [&](std::vector<uint16_t>& bits, std::vector<float>& vals) {
    for (size_t i = 0; i < vals.size(); ++i) {
      bits[i] = f32_to_bf16(next());
      vals[i] = bf16_to_f32(bits[i]);
    }
  };
  std::vector<uint16_t> ab(kM * kK), bb(kN * kK), vb(kK * kN);
  std::vector<float> af(kM * kK), bf(kN * kK), vf(kK * kN);
  fill(ab, af);
  fill(bb, bf);
  fill(vb, vf);
  DeviceBuffer da(DType::kBF16, {kM, kK}), db(DType::kBF16, {kN, kK}), dv(DType::kBF16, {kK, kN});
  copy_to_device(da.view(), TensorView(ab.data(), DType::kBF16, {kM, kK}));
  copy_to_device(db.view(), TensorView(bb.data(), DType::kBF16, {kN, kK}));
  copy_to_device(dv.view(), TensorView(vb.data(), DType::kBF16, {kK, kN}));
  DeviceBuffer dc(DType::kF32, {kM, kN}), dout(DType::kF32, {kM, kN});
  testing::poison_nan(dc.view());
  testing::poison_nan(dout.view());
  const int smem = (kM * kK + kN * kK + kK * kN) * 2 + 1024;
  SKV_CUDA_CHECK(cudaFuncSetAttribute(wgmma_products, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  wgmma_products<<<1, 128, smem>>>(da.ptr<__nv_bfloat16>(), db.ptr<__nv_bfloat16>(), dv.ptr<__nv_bfloat16>(),
                                    dc.ptr<float>(), dout.ptr<float>());
  SKV_CUDA_CHECK(cudaGetLastError());
  SKV_CUDA_CHECK(cudaDeviceSynchronize());
  const HostBuffer c = testing::to_host(dc.view()), o = testing::to_host(dout.view());

  double c_err = 0, c_max = 0, o_err = 0, o_max = 0;
  std::vector<float> p(kM * kK);
  for (int i = 0; i < kM; ++i)
    for (int j = 0; j < kN; ++j) {
      double ref = 0;
      for (int k = 0; k < kK; ++k) ref += static_cast<double>(af[i * kK + k]) * bf[j * kK + k];
      const float got = c.ptr<float>()[i * kN + j];
      ASSERT_TRUE(std::isfinite(got)) << "C[" << i << "][" << j << "] not written";
      c_err = std::max(c_err, std::fabs(ref - got));
      c_max = std::max(c_max, std::fabs(ref));
      p[i * kK + j] = bf16_to_f32(f32_to_bf16(got / 64));  // P as the kernel rounded it (columns of C = keys)
    }
  for (int i = 0; i < kM; ++i)
    for (int n = 0; n < kN; ++n) {
      double ref = 0;
      for (int k = 0; k < kK; ++k) ref += static_cast<double>(p[i * kK + k]) * vf[k * kN + n];
      const float got = o.ptr<float>()[i * kN + n];
      ASSERT_TRUE(std::isfinite(got)) << "O[" << i << "][" << n << "] not written";
      o_err = std::max(o_err, std::fabs(ref - got));
      o_max = std::max(o_max, std::fabs(ref));
    }
  // f32 accumulation of exact bf16 products: the error is summation order only (an H200 gave 3.6e-6 of 15 and
  // 3e-7 of 1.6); a wrong swizzle, descriptor or fragment is off by the size of the values.
  EXPECT_LT(c_err, 1e-6 * c_max * kK) << "S = Q K^T (K-major descriptors)";
  EXPECT_LT(o_err, 1e-6 * o_max * kK) << "O = P V (register A, N-major descriptor)";
}

}  // namespace
}  // namespace skv
