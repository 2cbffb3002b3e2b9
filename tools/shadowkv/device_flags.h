// --device cpu|cuda[:N] and --weight-dtype bf16|f32, shared by generate, eval, plan and bench.
#pragma once

#include <string>

#include "core/tensor.h"

namespace skv::cli {

// "cpu", "cuda" or "cuda:N". A CUDA device is checked here: a build without CUDA and a machine without a GPU are
// one-line errors (Error(kUnsupported)), before anything is loaded.
DeviceId parse_device_flag(const std::string& value);
// "bf16" or "f32".
DType parse_weight_dtype_flag(const std::string& value);
std::string device_name(DeviceId device);  // "cpu", "cuda:0"

}  // namespace skv::cli
