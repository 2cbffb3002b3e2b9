// Tokenizer: Hugging Face tokenizer.json BPE tokenizers (byte-level like Llama-3/Qwen, SentencePiece-style like
// Llama-2/Mistral), a streaming decoder that never splits a UTF-8 character, and a llama2.c tokenizer.bin converter.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace skv {

class Tokenizer {
 public:
  // Reads tokenizer.json and, if present beside it, tokenizer_config.json (and generation_config.json for extra
  // EOS ids). Throws skv::Error naming the file on bad input.
  static Tokenizer load(const std::filesystem::path& tokenizer_json);

  // Like HF's encode: added tokens are matched in the raw text first; with add_special_tokens the post-processor
  // template (or, without one, tokenizer_config's add_bos_token/add_eos_token) adds BOS/EOS.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Invalid UTF-8 in the result becomes U+FFFD. Throws skv::Error(kInvalidArgument) for ids out of range.
  // Like the tokenizers library (not transformers' clean_up_tokenization_spaces): decode(encode(x)) == x.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  int64_t vocab_size() const;                 // largest id + 1, added tokens included
  std::optional<int32_t> bos_id() const;
  std::vector<int32_t> eos_ids() const;        // eos_token, then any others generation_config.json names
  bool add_bos() const;                        // whether encode(..., true) prepends BOS
  bool is_special(int32_t id) const;
  std::optional<int32_t> token_id(std::string_view token_text) const;  // exact vocab/added-token lookup
  // The vocabulary string of an id (byte-level or "▁" form, as in tokenizer.json); throws when out of range.
  const std::string& token_text(int32_t id) const;

  // Raw decoded bytes before invalid UTF-8 is replaced; the streaming decoder builds on this.
  std::string decode_bytes(std::span<const int32_t> ids, bool skip_special_tokens) const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Incremental decoding for printing as tokens arrive: concatenated push() results plus finish() equal decode()
// of all ids (with the same skip_special_tokens).
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tok, bool skip_special_tokens = true);
  std::string push(int32_t id);  // text that is now complete (never half a UTF-8 char); an id past the
                                 // vocabulary (a model's padding rows) has no text

  std::string finish();          // whatever remains (invalid bytes as U+FFFD); the decoder can then be reused

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;  // ids from prefix_ on: the context that a decoder like Strip needs
  size_t read_ = 0;           // ids_[0, read_) have been turned into bytes already
  std::string pending_;       // bytes of an incomplete UTF-8 character
};

// llama2.c tokenizer.bin -> tokenizer.json + tokenizer_config.json in out_dir (a SentencePiece-style BPE with
// byte fallback; merges ordered by the score of the merged piece, as HF's SentencePiece converter does).
void convert_llama2c_tokenizer(const std::filesystem::path& tokenizer_bin, const std::filesystem::path& out_dir);

}  // namespace skv
