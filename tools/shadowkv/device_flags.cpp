// --device, --weight-dtype and --kv-dtype.
#include "device_flags.h"

#include "backend/device.h"
#include "core/error.h"

namespace skv::cli {

DeviceId parse_device_flag(const std::string& value) {
  if (value == "cpu") return {};
  [[maybe_unused]] int index = 0;
  if (value.rfind("cuda:", 0) == 0) {
    const std::string n = value.substr(5);
    if (n.empty() || n.size() > 3 || n.find_first_not_of("0123456789") != std::string::npos)
      throw Error(ErrorCode::kInvalidArgument, "--device must be cpu, cuda or cuda:N, got '" + value + "'");
    index = std::stoi(n);
  } else if (value != "cuda") {
    throw Error(ErrorCode::kInvalidArgument, "--device must be cpu, cuda or cuda:N, got '" + value + "'");
  }
#ifndef SKV_WITH_CUDA
  throw Error(ErrorCode::kUnsupported,
              "--device " + value + ": this shadowkv was built without CUDA (reconfigure with -DSKV_CUDA=ON); use --device cpu");
#else
  const int count = cuda_device_count();
  if (count == 0)
    throw Error(ErrorCode::kUnsupported, "--device " + value + ": no CUDA device is available on this machine; use --device cpu");
  if (index >= count)
    throw Error(ErrorCode::kInvalidArgument, "--device " + value + ": this machine has " + std::to_string(count) +
                                                 " CUDA device(s)");
  if (const std::string why = unsupported_gpu_reason(device_properties(index)); !why.empty())
    throw Error(ErrorCode::kUnsupported, "--device " + value + ": " + why + "; use --device cpu");
  return {DeviceKind::kCuda, index};
#endif
}

DType parse_weight_dtype_flag(const std::string& value) {
  if (value == "bf16") return DType::kBF16;
  if (value == "f32") return DType::kF32;
  throw Error(ErrorCode::kInvalidArgument, "--weight-dtype must be bf16 or f32, got '" + value + "'");
}

const char* const kKvDtypeHelp =
    "KV cache dtype, CUDA only: bf16 (default: half the memory, tensor-core attention at head_dim 64/128) or f32 "
    "(exact: with --weight-dtype f32 the CPU's numbers and tokens); the CPU's cache is always f32";

DType parse_kv_dtype_flag(const std::string& value) {
  if (value.empty() || value == "bf16") return DType::kBF16;
  if (value == "f32") return DType::kF32;
  throw Error(ErrorCode::kInvalidArgument, "--kv-dtype must be bf16 or f32, got '" + value + "'");
}

DType parse_kv_dtype_flag(const std::string& value, DeviceId device) {
  const bool cuda = device.kind == DeviceKind::kCuda;
  if (value.empty()) return cuda ? DType::kBF16 : DType::kF32;
  const DType dtype = parse_kv_dtype_flag(value);
  if (!cuda && dtype == DType::kBF16)
    throw Error(ErrorCode::kInvalidArgument, "--kv-dtype bf16: a bf16 KV cache is CUDA-only (the CPU backend keeps "
                                             "K/V in f32); use --device cuda, or --kv-dtype f32 on the CPU");
  return dtype;
}

std::string device_name(DeviceId d) {
  return d.kind == DeviceKind::kCuda ? "cuda:" + std::to_string(d.index) : "cpu";
}

}  // namespace skv::cli
