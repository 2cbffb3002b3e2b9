// lowrank_factorize (arXiv 2410.21465 §3.1, §4.1): the pre-RoPE key cache K [n, d] ~ U [n, r] * SV [r, d].
// Gram matrix G = K^T K accumulated in float64 by blocks of rows (dsyrk), eigen-decomposed by LAPACK's dsyevd;
// its top-r eigenvectors are the top-r right singular vectors V_r of K. U = K V_r, SV = V_r^T.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <cblas.h>
#include <lapacke.h>

#include "ops/cpu/cpu_ops.h"
#include "ops/shadow_ops.h"

namespace skv::cpu {

void lowrank_factorize(const LowrankFactorizeArgs& a) {
  const int64_t n = a.k.dim(0), d = a.k.dim(1), r = a.u.dim(1);
  const float* k = a.k.ptr<const float>();
  constexpr int64_t kBlock = 1024;  // rows converted to float64 at a time: bounds the scratch memory
  std::vector<double> block(static_cast<size_t>(std::min(n, kBlock) * d));
  auto load_block = [&](int64_t t0, int64_t nb) {
    for (int64_t i = 0; i < nb * d; ++i) block[static_cast<size_t>(i)] = k[t0 * d + i];
  };

  // 1. G = K^T K (upper triangle, row-major), float64.
  std::vector<double> gram(static_cast<size_t>(d * d), 0.0);
  for (int64_t t0 = 0; t0 < n; t0 += kBlock) {
    const int64_t nb = std::min(kBlock, n - t0);
    load_block(t0, nb);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(d), static_cast<int>(nb), 1.0, block.data(),
                static_cast<int>(d), 1.0, gram.data(), static_cast<int>(d));
  }

  // 2. Eigen-decomposition: eigenvalues ascending in w, eigenvector j in column j of gram.
  std::vector<double> w(static_cast<size_t>(d));
  const lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', static_cast<lapack_int>(d), gram.data(),
                                         static_cast<lapack_int>(d), w.data());
  if (info != 0)
    throw Error(ErrorCode::kInternal, "lowrank_factorize: LAPACKE_dsyevd failed with info " + std::to_string(info));

  // 3. V_r [d, r]: the eigenvectors of the r largest eigenvalues, largest first, sign-normalized.
  std::vector<double> vr(static_cast<size_t>(d * r));
  for (int64_t j = 0; j < r; ++j) {
    const int64_t col = d - 1 - j;
    int64_t arg = 0;
    for (int64_t i = 1; i < d; ++i)
      if (std::fabs(gram[static_cast<size_t>(i * d + col)]) > std::fabs(gram[static_cast<size_t>(arg * d + col)])) arg = i;
    const double sign = gram[static_cast<size_t>(arg * d + col)] < 0.0 ? -1.0 : 1.0;
    for (int64_t i = 0; i < d; ++i) vr[static_cast<size_t>(i * r + j)] = sign * gram[static_cast<size_t>(i * d + col)];
    if (!a.singular_values.empty())
      a.singular_values.ptr<float>()[j] = static_cast<float>(std::sqrt(std::max(w[static_cast<size_t>(col)], 0.0)));
  }

  // 4. SV = V_r^T.
  float* sv = a.sv.ptr<float>();
  for (int64_t j = 0; j < r; ++j)
    for (int64_t i = 0; i < d; ++i) sv[j * d + i] = static_cast<float>(vr[static_cast<size_t>(i * r + j)]);

  // 5. U = K V_r, float64 by blocks of rows.
  std::vector<double> ub(static_cast<size_t>(std::min(n, kBlock) * r));
  float* u = a.u.ptr<float>();
  for (int64_t t0 = 0; t0 < n; t0 += kBlock) {
    const int64_t nb = std::min(kBlock, n - t0);
    load_block(t0, nb);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(nb), static_cast<int>(r),
                static_cast<int>(d), 1.0, block.data(), static_cast<int>(d), vr.data(), static_cast<int>(r), 0.0,
                ub.data(), static_cast<int>(r));
    for (int64_t i = 0; i < nb * r; ++i) u[t0 * r + i] = static_cast<float>(ub[static_cast<size_t>(i)]);
  }
}

}  // namespace skv::cpu
