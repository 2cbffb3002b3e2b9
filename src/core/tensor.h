// TensorView: the only currency between layers. A non-owning pointer + dtype + device + shape + strides.
// Shapes are outermost first, strides in elements; most ops require contiguous views and say so.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace skv {

enum class DeviceKind : uint8_t { kCpu, kCuda };

struct DeviceId {
  DeviceKind kind = DeviceKind::kCpu;
  int index = 0;
  bool operator==(const DeviceId&) const = default;
};

inline constexpr int kMaxDims = 4;

struct Shape {
  int rank = 0;
  std::array<int64_t, kMaxDims> dims{};

  Shape() = default;
  Shape(std::initializer_list<int64_t> d);
  int64_t operator[](int i) const { return dims[static_cast<size_t>(i)]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  std::string str() const;  // "[2, 3]"
};

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  DeviceId device{};
  Shape shape;
  std::array<int64_t, kMaxDims> strides{};  // in elements

  TensorView() = default;
  // A contiguous view of `data` with `shape`.
  TensorView(void* data, DType dtype, Shape shape, DeviceId device = {});

  int64_t numel() const { return shape.numel(); }
  int64_t dim(int i) const { return shape[i]; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  bool is_contiguous() const;
  bool empty() const { return data == nullptr; }

  template <typename T>
  T* ptr() const { return static_cast<T*>(data); }

  // Rows [begin, end) of the outermost dimension (still contiguous if this is).
  TensorView slice_rows(int64_t begin, int64_t end) const;
  // The same memory under another shape with the same number of elements (contiguous only).
  TensorView reshape(Shape new_shape) const;

  std::string describe() const;  // "[2, 3] f32"
};

}  // namespace skv
