// Built-in chat templates (Llama-3, ChatML, Mistral) and their detection.
#include "eval/chat_template.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace skv::eval {
namespace {

std::string_view trim(std::string_view s) {
  const auto not_space = [](char c) { return c != ' ' && c != '\n' && c != '\t' && c != '\r'; };
  while (!s.empty() && !not_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && !not_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view ltrim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n')) s.remove_prefix(1);
  return s;
}

// The marker token of each template, which the vocabulary must hold.
const char* marker(ChatTemplate kind) {
  switch (kind) {
    case ChatTemplate::kLlama3: return "<|start_header_id|>";
    case ChatTemplate::kChatMl: return "<|im_start|>";
    case ChatTemplate::kMistral: return "[INST]";
    case ChatTemplate::kNone: break;
  }
  return "";
}

// chat_template is a string, or a list of {"name", "template"} (the "default" one is used).
std::string read_chat_template(const std::filesystem::path& model_dir) {
  const auto path = model_dir / "tokenizer_config.json";
  std::ifstream in(path);
  if (!in) return {};
  auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("chat_template")) return {};
  const auto& t = j["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {
    std::string first;
    for (const auto& e : t) {
      if (!e.is_object() || !e.contains("template") || !e["template"].is_string()) continue;
      if (first.empty()) first = e["template"].get<std::string>();
      if (e.value("name", "") == "default") return e["template"].get<std::string>();
    }
    return first;
  }
  return {};
}

}  // namespace

const char* chat_template_name(ChatTemplate kind) {
  switch (kind) {
    case ChatTemplate::kNone: return "none";
    case ChatTemplate::kLlama3: return "llama3";
    case ChatTemplate::kChatMl: return "chatml";
    case ChatTemplate::kMistral: return "mistral";
  }
  return "none";
}

ChatTemplate parse_chat_template(std::string_view name) {
  for (ChatTemplate k : {ChatTemplate::kNone, ChatTemplate::kLlama3, ChatTemplate::kChatMl, ChatTemplate::kMistral})
    if (name == chat_template_name(k)) return k;
  throw Error(ErrorCode::kInvalidArgument, "unknown chat template '" + std::string(name) +
                                               "' (expected auto, none, llama3, chatml or mistral)");
}

PromptFormat make_prompt_format(ChatTemplate kind, const Tokenizer& tokenizer, bool disable_thinking) {
  PromptFormat f;
  f.kind = kind;
  if (kind == ChatTemplate::kNone) return f;
  if (kind != ChatTemplate::kMistral && !tokenizer.token_id(marker(kind)))
    throw Error(ErrorCode::kInvalidArgument, std::string("the ") + chat_template_name(kind) +
                                                 " chat template needs the token " + marker(kind) +
                                                 ", which this tokenizer does not have");
  if (kind == ChatTemplate::kLlama3 || kind == ChatTemplate::kMistral) {
    const auto bos = tokenizer.bos_id();
    if (!bos)
      throw Error(ErrorCode::kInvalidArgument,
                  std::string("the ") + chat_template_name(kind) + " chat template needs a BOS token");
    f.bos_text = tokenizer.token_text(*bos);
  }
  f.disable_thinking = kind == ChatTemplate::kChatMl && disable_thinking;
  return f;
}

PromptFormat detect_prompt_format(const std::filesystem::path& model_dir, const Tokenizer& tokenizer) {
  const std::string t = read_chat_template(model_dir);
  if (t.empty()) {
    PromptFormat f;
    f.note = "no chat_template in tokenizer_config.json: raw text";
    return f;
  }
  ChatTemplate kind = ChatTemplate::kNone;
  if (t.find("<|start_header_id|>") != std::string::npos) kind = ChatTemplate::kLlama3;
  else if (t.find("<|im_start|>") != std::string::npos) kind = ChatTemplate::kChatMl;
  else if (t.find("[INST]") != std::string::npos) kind = ChatTemplate::kMistral;
  if (kind == ChatTemplate::kNone || (kind != ChatTemplate::kMistral && !tokenizer.token_id(marker(kind)))) {
    PromptFormat f;
    f.note = "the chat_template is none of llama3, chatml or mistral: raw text (choose one with --chat-template)";
    return f;
  }
  PromptFormat f = make_prompt_format(kind, tokenizer, t.find("enable_thinking") != std::string::npos);
  f.note = std::string("chat template ") + chat_template_name(kind) + " (from tokenizer_config.json)";
  return f;
}

std::string format_prompt(const PromptFormat& f, std::string_view user, std::string_view answer_prefix) {
  std::string s;
  switch (f.kind) {
    case ChatTemplate::kNone:
      s.append(user).append(answer_prefix);
      return s;
    case ChatTemplate::kLlama3:
      // Llama-3's template trims the message content.
      s.append(f.bos_text).append("<|start_header_id|>user<|end_header_id|>\n\n").append(trim(user));
      s.append("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n").append(ltrim(answer_prefix));
      return s;
    case ChatTemplate::kChatMl:
      s.append("<|im_start|>user\n").append(user).append("<|im_end|>\n<|im_start|>assistant\n");
      if (f.disable_thinking) s.append("<think>\n\n</think>\n\n");
      s.append(ltrim(answer_prefix));
      return s;
    case ChatTemplate::kMistral:
      s.append(f.bos_text).append("[INST] ").append(trim(user)).append(" [/INST]").append(answer_prefix);
      return s;
  }
  return s;
}

std::vector<int32_t> encode_prompt(const PromptFormat& f, const Tokenizer& tokenizer, std::string_view text) {
  return tokenizer.encode(text, /*add_special_tokens=*/f.kind == ChatTemplate::kNone);
}

}  // namespace skv::eval
