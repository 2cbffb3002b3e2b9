// Test helpers: random tensors and element-wise comparison with a useful failure message.
#include "testing/tensor_testing.h"

#include <cmath>
#include <random>
#include <sstream>

namespace skv::testing {

std::vector<float> random_floats(size_t n, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

HostBuffer random_tensor(Shape shape, uint64_t seed, float lo, float hi) {
  HostBuffer buf(DType::kF32, shape);
  auto v = random_floats(static_cast<size_t>(shape.numel()), seed, lo, hi);
  std::copy(v.begin(), v.end(), buf.ptr<float>());
  return buf;
}

::testing::AssertionResult tensors_near(const float* got, const float* want, size_t n, double atol, double rtol) {
  bool any_nonzero = false;
  size_t worst = 0;
  double worst_excess = -1.0;
  size_t n_bad = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(got[i]) || !std::isfinite(want[i]))
      return ::testing::AssertionFailure() << "non-finite value at " << i << ": got " << got[i] << ", want " << want[i];
    if (want[i] != 0.0f) any_nonzero = true;
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double tol = atol + rtol * std::fabs(static_cast<double>(want[i]));
    if (err > tol) ++n_bad;
    if (err - tol > worst_excess) {
      worst_excess = err - tol;
      worst = i;
    }
  }
  if (n == 0) return ::testing::AssertionFailure() << "empty tensors";
  if (!any_nonzero) return ::testing::AssertionFailure() << "the reference is all zeros: the comparison proves nothing";
  if (n_bad > 0) {
    return ::testing::AssertionFailure() << n_bad << " of " << n << " elements differ; worst at " << worst << ": got "
                                         << got[worst] << ", want " << want[worst] << " (atol " << atol << ", rtol "
                                         << rtol << ")";
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult tensors_near(const TensorView& got, const TensorView& want, double atol, double rtol) {
  if (!(got.shape == want.shape))
    return ::testing::AssertionFailure() << "shape " << got.shape.str() << " vs " << want.shape.str();
  if (got.dtype != DType::kF32 || want.dtype != DType::kF32 || !got.is_contiguous() || !want.is_contiguous())
    return ::testing::AssertionFailure() << "tensors_near compares contiguous f32 tensors";
  return tensors_near(got.ptr<float>(), want.ptr<float>(), static_cast<size_t>(got.numel()), atol, rtol);
}

double relative_l2_error(const float* got, const float* want, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  return den == 0 ? (num == 0 ? 0 : INFINITY) : std::sqrt(num / den);
}

}  // namespace skv::testing
