// --device cpu|cuda[:N], --weight-dtype bf16|f32 and --kv-dtype bf16|f32, shared by generate, eval, plan and
// bench.
#pragma once

#include <string>

#include "core/tensor.h"

namespace skv::cli {

// "cpu", "cuda" or "cuda:N". A CUDA device is checked here: a build without CUDA and a machine without a GPU are
// one-line errors (Error(kUnsupported)), before anything is loaded.
DeviceId parse_device_flag(const std::string& value);
// "bf16" or "f32".
DType parse_weight_dtype_flag(const std::string& value);
// --kv-dtype of a command that plans the CUDA cache whatever --device says (plan): "bf16" (also the default, when
// value is empty) or "f32".
DType parse_kv_dtype_flag(const std::string& value);
// --kv-dtype of a command that runs on `device`: empty (the flag not given) is the device's cache dtype, bf16 on
// CUDA, f32 on the CPU; "bf16" on the CPU is an error (its cache is always f32); else as parse_kv_dtype_flag.
DType parse_kv_dtype_flag(const std::string& value, DeviceId device);
// The help text of --kv-dtype.
extern const char* const kKvDtypeHelp;
std::string device_name(DeviceId device);  // "cpu", "cuda:0"

}  // namespace skv::cli
