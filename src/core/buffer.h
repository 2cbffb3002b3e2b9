// HostBuffer: owning, 64-byte aligned host memory that hands out TensorViews.
#pragma once

#include <cstddef>
#include <memory>

#include "core/tensor.h"

namespace skv {

class HostBuffer {
 public:
  HostBuffer() = default;
  explicit HostBuffer(size_t bytes);
  HostBuffer(DType dtype, Shape shape);  // sized for the tensor; zero-filled

  void* data() const { return data_.get(); }
  size_t bytes() const { return bytes_; }
  // A view of the whole buffer with this dtype and shape (must fit).
  TensorView view(DType dtype, Shape shape) const;
  TensorView view() const { return view(dtype_, shape_); }

  template <typename T>
  T* ptr() const { return static_cast<T*>(data()); }

 private:
  struct Free { void operator()(void* p) const; };
  std::unique_ptr<void, Free> data_;
  size_t bytes_ = 0;
  DType dtype_ = DType::kU8;
  Shape shape_;
};

}  // namespace skv
