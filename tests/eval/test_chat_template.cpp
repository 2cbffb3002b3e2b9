// The built-in chat templates: detection from tokenizer_config.json and the token structure they produce.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "eval/chat_template.h"
#include "eval_testing.h"

namespace skv::eval {
namespace {

using namespace skv::eval::testing;

int32_t id_of(const Tokenizer& tok, const char* text) {
  const auto id = tok.token_id(text);
  EXPECT_TRUE(id.has_value()) << text;
  return id.value_or(-1);
}

size_t count(const std::vector<int32_t>& v, int32_t x) { return static_cast<size_t>(std::count(v.begin(), v.end(), x)); }

TEST(ChatTemplate, DetectsFromTokenizerConfig) {
  EXPECT_EQ(detect_prompt_format(llama3_dir(), tokenizer_at(llama3_dir())).kind, ChatTemplate::kLlama3);
  const PromptFormat qwen = detect_prompt_format(qwen3_dir(), tokenizer_at(qwen3_dir()));
  EXPECT_EQ(qwen.kind, ChatTemplate::kChatMl);
  EXPECT_TRUE(qwen.disable_thinking) << "Qwen3's template knows enable_thinking";
  EXPECT_EQ(detect_prompt_format(stories_dir(), tokenizer_at(stories_dir())).kind, ChatTemplate::kNone);
  // Mistral-7B-v0.1 (a base model) has no chat_template.
  EXPECT_EQ(detect_prompt_format(mistral_dir(), tokenizer_at(mistral_dir())).kind, ChatTemplate::kNone);
}

TEST(ChatTemplate, DetectsMistralAndUnknownTemplates) {
  const auto dir = std::filesystem::temp_directory_path() / ("skv-chat-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "tokenizer_config.json")
        << R"({"chat_template": "{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}"})";
  }
  EXPECT_EQ(detect_prompt_format(dir, tokenizer_at(mistral_dir())).kind, ChatTemplate::kMistral);
  {
    std::ofstream(dir / "tokenizer_config.json") << R"({"chat_template": [{"name": "tool_use", "template": "x"},
        {"name": "default", "template": "<|im_start|>{{ m }}"}]})";
  }
  EXPECT_EQ(detect_prompt_format(dir, tokenizer_at(qwen3_dir())).kind, ChatTemplate::kChatMl);
  {
    std::ofstream(dir / "tokenizer_config.json") << R"({"chat_template": "<start_of_turn>{{ m }}"})";
  }
  const PromptFormat unknown = detect_prompt_format(dir, tokenizer_at(llama3_dir()));
  EXPECT_EQ(unknown.kind, ChatTemplate::kNone);
  EXPECT_NE(unknown.note.find("--chat-template"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(ChatTemplate, Llama3TokenStructure) {
  const Tokenizer& tok = tokenizer_at(llama3_dir());
  const PromptFormat f = make_prompt_format(ChatTemplate::kLlama3, tok);
  const std::string text = format_prompt(f, "Question?\n", " The answer is");
  EXPECT_EQ(text,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nQuestion?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nThe answer is");
  const std::vector<int32_t> ids = encode_prompt(f, tok, text);
  const int32_t bos = id_of(tok, "<|begin_of_text|>"), start = id_of(tok, "<|start_header_id|>"),
                end = id_of(tok, "<|end_header_id|>"), eot = id_of(tok, "<|eot_id|>");
  ASSERT_GE(ids.size(), 10u);
  EXPECT_EQ(ids[0], bos);
  EXPECT_EQ(count(ids, bos), 1u) << "one BOS: the template writes it, encoding adds none";
  EXPECT_EQ(ids[1], start);
  EXPECT_EQ(tok.decode(std::vector<int32_t>{ids[2]}), "user");
  EXPECT_EQ(ids[3], end);
  EXPECT_EQ(count(ids, start), 2u);
  EXPECT_EQ(count(ids, eot), 1u);
  EXPECT_EQ(tok.decode(ids), text);
  // The assistant turn starts right before the answer prefix.
  const std::vector<int32_t> prefix = tok.encode("The answer is", false);
  ASSERT_GT(ids.size(), prefix.size());
  EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), ids.end() - static_cast<long>(prefix.size())));
}

TEST(ChatTemplate, ChatMlTokenStructure) {
  const Tokenizer& tok = tokenizer_at(qwen3_dir());
  const PromptFormat f = make_prompt_format(ChatTemplate::kChatMl, tok, /*disable_thinking=*/true);
  const std::string text = format_prompt(f, "Question?", " The answer is");
  EXPECT_EQ(text, "<|im_start|>user\nQuestion?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nThe answer is");
  const std::vector<int32_t> ids = encode_prompt(f, tok, text);
  const int32_t im_start = id_of(tok, "<|im_start|>"), im_end = id_of(tok, "<|im_end|>");
  EXPECT_EQ(ids[0], im_start) << "Qwen has no BOS";
  EXPECT_EQ(count(ids, im_start), 2u);
  EXPECT_EQ(count(ids, im_end), 1u);
  EXPECT_EQ(tok.decode(ids), text);
  const PromptFormat thinking = make_prompt_format(ChatTemplate::kChatMl, tok, false);
  EXPECT_EQ(format_prompt(thinking, "Q", " A"), "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA");
}

TEST(ChatTemplate, MistralTokenStructure) {
  const Tokenizer& tok = tokenizer_at(mistral_dir());
  const PromptFormat f = make_prompt_format(ChatTemplate::kMistral, tok);
  const std::string text = format_prompt(f, "Question?", " The answer is");
  EXPECT_EQ(text, "<s>[INST] Question? [/INST] The answer is");
  const std::vector<int32_t> ids = encode_prompt(f, tok, text);
  ASSERT_TRUE(tok.bos_id().has_value());
  EXPECT_EQ(ids[0], *tok.bos_id());
  EXPECT_EQ(count(ids, *tok.bos_id()), 1u);
  EXPECT_EQ(tok.decode(ids, /*skip_special_tokens=*/true), "[INST] Question? [/INST] The answer is");
}

TEST(ChatTemplate, RawTextGetsTheTokenizersBos) {
  const Tokenizer& tok = tokenizer_at(stories_dir());
  const PromptFormat f;
  const std::string text = format_prompt(f, "Question?", " The answer is");
  EXPECT_EQ(text, "Question? The answer is");
  const std::vector<int32_t> ids = encode_prompt(f, tok, text);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(count(ids, 1), 1u);
}

TEST(ChatTemplate, Names) {
  EXPECT_EQ(parse_chat_template("llama3"), ChatTemplate::kLlama3);
  EXPECT_EQ(parse_chat_template("none"), ChatTemplate::kNone);
  EXPECT_THROW(parse_chat_template("jinja"), Error);
  // A template whose marker the vocabulary lacks is refused.
  EXPECT_THROW(make_prompt_format(ChatTemplate::kLlama3, tokenizer_at(stories_dir())), Error);
}

}  // namespace
}  // namespace skv::eval
