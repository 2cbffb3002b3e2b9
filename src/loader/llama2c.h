// Converter from Karpathy's llama2.c checkpoints (legacy version-0 .bin) to a Hugging Face Llama directory.
#pragma once

#include <filesystem>

namespace skv {

// Writes `out_dir`/config.json (LlamaForCausalLM) and `out_dir`/model.safetensors (f32), creating `out_dir`.
// wq/wk rows are permuted within each head so that HF's rotate-half RoPE reproduces llama2.c's
// interleaved-pair RoPE. Throws kNotFound for a missing file, kParse for a header that does not match
// the file size, kUnsupported for the versioned ("ak42") llama2.c export format.
void convert_llama2c_checkpoint(const std::filesystem::path& checkpoint_bin, const std::filesystem::path& out_dir);

}  // namespace skv
