// The exponentials of the CPU attention softmax (attention_prefill, attention_decode, attend_sparse), written so
// the compiler vectorizes them (std::exp is a scalar call: at 16K tokens a prefill spends about half its time
// in it, ~6.4 billion calls for the testbed model).
//
// exp_nonpositive(x) = e^x for x <= 0, as the softmax has it once the row's max is subtracted: range reduction
// x = n ln2 + r (|r| <= ln2/2; ln2 split in two for an exact n ln2), e^r by the degree-7 minimax polynomial of
// the Cephes library, 2^n put in the exponent bits. Relative error at most 8.6e-8 (0.72 ulp) over every float in
// [-87, 0], checked exhaustively against double-precision exp (std::exp(float): 6.0e-8); tests/ops/
// test_softmax_exp.cpp checks it. Below -87 it returns e^-87 = 1.6e-38 (std::exp: a smaller denormal or 0): no
// softmax weight or sum changes by more than that. No branch and no library call, so loops over it vectorize.
#pragma once

#include <cstdint>
#include <limits>

namespace skv::cpu {

inline float exp_nonpositive(float x) {
  // max(x, -87) on the bits: for x <= 0 a larger magnitude has larger bits (an integer min vectorizes where a
  // float compare, which may trap, does not).
  const uint32_t bits = __builtin_bit_cast(uint32_t, x);
  x = __builtin_bit_cast(float, bits < 0xC2AE0000u ? bits : 0xC2AE0000u);  // 0xC2AE0000 = -87.0f
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln2): 1.5 * 2^23 trick
  float r = x - n * 0.693359375f;                                           // ln2's leading bits: n ln2 exact
  r = r - n * -2.12194440e-4f;                                              // and the rest of ln2
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t scale_bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 0]
  return p * __builtin_bit_cast(float, scale_bits);
}

// The largest of s[0, n) (-inf when n == 0).
inline float max_of(const float* s, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < n; ++j) m = s[j] > m ? s[j] : m;
  return m;
}

// s[j] = e^(s[j] - max) for j in [0, n), max >= every s[j]; returns the sum of the results in double.
inline double exp_shifted_sum(float* __restrict s, int64_t n, float max) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    s[j] = exp_nonpositive(s[j] - max);
    sum += s[j];
  }
  return sum;
}

}  // namespace skv::cpu
