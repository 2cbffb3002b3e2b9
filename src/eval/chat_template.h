// Prompt formatting for the evaluation: the model's chat template when it has one, raw text otherwise. Three
// built-in templates cover the supported families (no Jinja): Llama-3, ChatML (Qwen) and Mistral ([INST]).
// They are recognised in tokenizer_config.json's chat_template by their marker tokens, which must also be tokens
// of the vocabulary. The answer prefix (RULER's "The special magic number for ... is") follows the start of the
// assistant turn, so the model continues the answer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace skv::eval {

enum class ChatTemplate { kNone, kLlama3, kChatMl, kMistral };

const char* chat_template_name(ChatTemplate kind);  // "none", "llama3", "chatml", "mistral"
// "none", "llama3", "chatml", "mistral"; anything else is Error(kInvalidArgument) listing the choices.
ChatTemplate parse_chat_template(std::string_view name);

struct PromptFormat {
  ChatTemplate kind = ChatTemplate::kNone;
  std::string bos_text;           // written at the start by llama3 and mistral ("<|begin_of_text|>", "<s>")
  bool disable_thinking = false;  // ChatML templates with enable_thinking (Qwen3): an empty <think> block
  std::string note;               // why the detection chose what it chose (for the log)
};

// Reads chat_template from tokenizer_config.json in model_dir (absent file or key: raw text). A template that
// is none of the three known ones falls back to raw text, and `note` says so.
PromptFormat detect_prompt_format(const std::filesystem::path& model_dir, const Tokenizer& tokenizer);
// An explicit choice (--chat-template): the marker tokens must exist in the vocabulary.
PromptFormat make_prompt_format(ChatTemplate kind, const Tokenizer& tokenizer, bool disable_thinking = false);

// The full prompt text: one user turn holding `user`, then the start of the assistant turn and the answer
// prefix. For raw text: user + answer_prefix (RULER's base-model format, the prefix starts with a space).
std::string format_prompt(const PromptFormat& format, std::string_view user, std::string_view answer_prefix);
// Token ids of a formatted prompt: a template writes its own BOS (encoded without adding special tokens); raw
// text gets what the tokenizer adds (BOS for Llama-family tokenizers).
std::vector<int32_t> encode_prompt(const PromptFormat& format, const Tokenizer& tokenizer, std::string_view text);

}  // namespace skv::eval
