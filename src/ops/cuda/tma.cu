// Tensor maps for TMA (tma.cuh): cuTensorMapEncodeTiled from the driver, found through the runtime (no link
// against libcuda).
#include <cudaTypedefs.h>

#include <string>

#include "ops/cuda/tma.cuh"

namespace skv::cuda {
namespace {

PFN_cuTensorMapEncodeTiled_v12000 encode_tiled() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found{};
    SKV_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &found));
    if (found != cudaDriverEntryPointSuccess || f == nullptr)
      throw Error(ErrorCode::kUnsupported, "the CUDA driver has no cuTensorMapEncodeTiled (TMA needs a 12.0+ driver)");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

}  // namespace

CUtensorMap make_bf16_tensor_map_sw128(const void* base, int64_t rows, int64_t cols, int64_t row_stride,
                                       int box_rows, int box_cols) {
  SKV_ASSERT_MSG(rows > 0 && cols > 0 && row_stride >= cols && row_stride % 8 == 0 && box_cols * 2 <= 128 &&
                     box_rows <= 256 && aligned16(base),
                 "make_bf16_tensor_map_sw128: shape");
  CUtensorMap map{};
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(row_stride) * 2};  // bytes, for dims 1..
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(box_cols), static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t element_strides[2] = {1, 1};
  const CUresult r = encode_tiled()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(base), dims, strides,
                                    box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                    CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw Error(ErrorCode::kInternal, "cuTensorMapEncodeTiled failed (CUresult " + std::to_string(static_cast<int>(r)) +
                                          ") for " + std::to_string(rows) + " x " + std::to_string(cols) + " bf16");
  return map;
}

}  // namespace skv::cuda
