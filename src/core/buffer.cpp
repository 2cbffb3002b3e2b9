// HostBuffer: aligned owning host allocation.
#include "core/buffer.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace skv {

void HostBuffer::Free::operator()(void* p) const { std::free(p); }

HostBuffer::HostBuffer(size_t bytes) : bytes_(bytes), shape_({static_cast<int64_t>(bytes)}) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (p == nullptr)
    throw Error(ErrorCode::kResource, "out of host memory allocating " + std::to_string(bytes) + " bytes");
  std::memset(p, 0, rounded == 0 ? 64 : rounded);
  data_.reset(p);
}

HostBuffer::HostBuffer(DType dtype, Shape shape)
    : HostBuffer(static_cast<size_t>(shape.numel()) * dtype_size(dtype)) {
  dtype_ = dtype;
  shape_ = shape;
}

TensorView HostBuffer::view(DType dtype, Shape shape) const {
  SKV_ASSERT(static_cast<size_t>(shape.numel()) * dtype_size(dtype) <= bytes_);
  return TensorView(data_.get(), dtype, shape);
}

}  // namespace skv
