// Shape and TensorView helpers.
#include "core/tensor.h"

#include <sstream>

namespace skv {

Shape::Shape(std::initializer_list<int64_t> d) {
  SKV_ASSERT(d.size() <= static_cast<size_t>(kMaxDims));
  rank = static_cast<int>(d.size());
  int i = 0;
  for (int64_t v : d) dims[static_cast<size_t>(i++)] = v;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= dims[static_cast<size_t>(i)];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (rank != o.rank) return false;
  for (int i = 0; i < rank; ++i)
    if (dims[static_cast<size_t>(i)] != o.dims[static_cast<size_t>(i)]) return false;
  return true;
}

std::string Shape::str() const {
  std::ostringstream os;
  os << "[";
  for (int i = 0; i < rank; ++i) os << (i ? ", " : "") << dims[static_cast<size_t>(i)];
  os << "]";
  return os.str();
}

TensorView::TensorView(void* d, DType dt, Shape s, DeviceId dev) : data(d), dtype(dt), device(dev), shape(s) {
  int64_t stride = 1;
  for (int i = shape.rank - 1; i >= 0; --i) {
    strides[static_cast<size_t>(i)] = stride;
    stride *= shape[i];
  }
}

bool TensorView::is_contiguous() const {
  int64_t stride = 1;
  for (int i = shape.rank - 1; i >= 0; --i) {
    if (shape[i] != 1 && strides[static_cast<size_t>(i)] != stride) return false;
    stride *= shape[i];
  }
  return true;
}

TensorView TensorView::slice_rows(int64_t begin, int64_t end) const {
  SKV_ASSERT(shape.rank >= 1 && begin >= 0 && begin <= end && end <= shape[0]);
  TensorView v = *this;
  v.data = static_cast<char*>(data) + static_cast<size_t>(begin * strides[0]) * dtype_size(dtype);
  v.shape.dims[0] = end - begin;
  return v;
}

TensorView TensorView::reshape(Shape new_shape) const {
  SKV_ASSERT(is_contiguous() && new_shape.numel() == numel());
  return TensorView(data, dtype, new_shape, device);
}

std::string TensorView::describe() const { return shape.str() + " " + dtype_name(dtype); }

}  // namespace skv
