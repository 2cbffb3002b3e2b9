// The CPU side of device_util.h; the CUDA side is device_util.cu (SKV_WITH_CUDA builds).
#include "model/device_util.h"

#include <string>

namespace skv {

namespace detail {
#ifdef SKV_WITH_CUDA
void fill_uniform_cuda(const TensorView& t, uint64_t seed, float scale);
void fill_constant_cuda(const TensorView& t, float value);
#else
[[noreturn]] void no_cuda() {
  throw Error(ErrorCode::kUnsupported, "built without CUDA; reconfigure with -DSKV_CUDA=ON");
}
#endif
}  // namespace detail

#ifndef SKV_WITH_CUDA
DeviceMemoryInfo device_memory_info(int) { detail::no_cuda(); }
#endif

namespace {
void require_fillable(const TensorView& t) {
  if (!(t.dtype == DType::kF32 || t.dtype == DType::kBF16) || !t.is_contiguous())
    throw Error(ErrorCode::kInvalidArgument, "fill: expects a contiguous f32 or bf16 tensor, got " + t.describe());
}
}  // namespace

void fill_uniform(const TensorView& t, uint64_t seed, float scale) {
  require_fillable(t);
  if (t.device.kind == DeviceKind::kCuda) {
#ifdef SKV_WITH_CUDA
    detail::fill_uniform_cuda(t, seed, scale);
    return;
#else
    detail::no_cuda();
#endif
  }
  const auto n = static_cast<uint64_t>(t.numel());
  for (uint64_t i = 0; i < n; ++i) {
    const float v = scale * (2.0f * hash_uniform(seed, i) - 1.0f);
    if (t.dtype == DType::kF32) t.ptr<float>()[i] = v;
    else t.ptr<uint16_t>()[i] = f32_to_bf16(v);
  }
}

void fill_constant(const TensorView& t, float value) {
  require_fillable(t);
  if (t.device.kind == DeviceKind::kCuda) {
#ifdef SKV_WITH_CUDA
    detail::fill_constant_cuda(t, value);
    return;
#else
    detail::no_cuda();
#endif
  }
  const auto n = static_cast<uint64_t>(t.numel());
  for (uint64_t i = 0; i < n; ++i) {
    if (t.dtype == DType::kF32) t.ptr<float>()[i] = value;
    else t.ptr<uint16_t>()[i] = f32_to_bf16(value);
  }
}

}  // namespace skv
