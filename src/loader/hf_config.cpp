// config.json parsing: key-by-key reads with type and range checks, then cross-key consistency checks.
#include "loader/hf_config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/error.h"

namespace skv {
namespace {

using nlohmann::json;

// Limits far above any real model, low enough to catch a corrupted or mistyped file before it turns into
// a multi-terabyte allocation.
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxDim = int64_t{1} << 17;
constexpr int64_t kMaxHidden = int64_t{1} << 20;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxHeadDim = 1024;
constexpr int64_t kMaxPositions = int64_t{1} << 26;

std::string brief(const json& j) {
  std::string s = j.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// Reads keys of one JSON object, naming `source` and the key (with its parent, e.g. rope_scaling.factor)
// in every error.
class Reader {
 public:
  Reader(const json& j, std::string source, std::string prefix = "")
      : j_(j), source_(std::move(source)), prefix_(std::move(prefix)) {}

  // Present and not null.
  bool has(const char* key) const {
    auto it = j_.find(key);
    return it != j_.end() && !it->is_null();
  }
  const json& at(const char* key) const {
    if (!has(key)) missing(key);
    return *j_.find(key);
  }

  [[noreturn]] void missing(const char* key) const {
    throw Error(ErrorCode::kNotFound, source_ + ": missing required key '" + name(key) + "'");
  }
  [[noreturn]] void bad(const char* key, const std::string& expected) const {
    throw Error(ErrorCode::kInvalidArgument,
                source_ + ": '" + name(key) + "' is " + brief(*j_.find(key)) + ", expected " + expected);
  }
  [[noreturn]] void unsupported(const char* key, const std::string& what) const {
    throw Error(ErrorCode::kUnsupported, source_ + ": '" + name(key) + "' is " + brief(*j_.find(key)) + ", " + what);
  }

  // An integer in [lo, hi]; `def` when absent or null unless required.
  int64_t integer(const char* key, int64_t lo, int64_t hi, bool required, int64_t def = 0) const {
    if (!has(key)) {
      if (required) missing(key);
      return def;
    }
    const json& v = at(key);
    const std::string range = "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    if (!v.is_number_integer()) bad(key, range);
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)) bad(key, range);
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) bad(key, range);
    return x;
  }

  // A finite number in (lo, hi] (lo exclusive: every float we read must be strictly positive).
  double number(const char* key, double lo, double hi, bool required, double def = 0.0) const {
    if (!has(key)) {
      if (required) missing(key);
      return def;
    }
    const json& v = at(key);
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= lo || v.get<double>() > hi) {
      bad(key, "a number in (" + fmt(lo) + ", " + fmt(hi) + "]");
    }
    return v.get<double>();
  }

  bool boolean(const char* key, bool def) const {
    if (!has(key)) return def;
    const json& v = at(key);
    if (!v.is_boolean()) bad(key, "true or false");
    return v.get<bool>();
  }

  std::string string(const char* key, bool required, const std::string& def = "") const {
    if (!has(key)) {
      if (required) missing(key);
      return def;
    }
    const json& v = at(key);
    if (!v.is_string()) bad(key, "a string");
    return v.get<std::string>();
  }

  // An int or a list of ints (token ids); empty when absent or null.
  std::vector<int32_t> token_ids(const char* key) const {
    std::vector<int32_t> out;
    if (!has(key)) return out;
    const json& v = at(key);
    auto one = [&](const json& x) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > std::numeric_limits<int32_t>::max())
        bad(key, "a non-negative token id or a list of them");
      out.push_back(static_cast<int32_t>(x.get<int64_t>()));
    };
    if (v.is_array()) {
      for (const json& x : v) one(x);
    } else {
      one(v);
    }
    return out;
  }

  const std::string& source() const { return source_; }
  std::string name(const char* key) const { return prefix_.empty() ? key : prefix_ + "." + key; }

 private:
  static std::string fmt(double x) {
    std::ostringstream os;
    os << x;
    return os.str();
  }
  const json& j_;
  std::string source_;
  std::string prefix_;
};

constexpr Architecture kArchitectures[] = {Architecture::kLlama, Architecture::kMistral, Architecture::kQwen2};

std::string supported_architectures() {
  std::string s;
  for (Architecture a : kArchitectures) s += (s.empty() ? "" : ", ") + std::string(architecture_name(a));
  return s;
}

Architecture parse_architecture(const Reader& r) {
  if (r.has("architectures")) {
    const json& a = r.at("architectures");
    if (!a.is_array() || a.empty()) r.bad("architectures", "a non-empty list of class names");
    for (const json& name : a) {
      if (!name.is_string()) r.bad("architectures", "a non-empty list of class names");
      for (Architecture arch : kArchitectures)
        if (name.get<std::string>() == architecture_name(arch)) return arch;
    }
    r.unsupported("architectures", "supported: " + supported_architectures());
  }
  // Some hand-written configs only carry model_type.
  if (r.has("model_type")) {
    const std::string t = r.string("model_type", true);
    if (t == "llama") return Architecture::kLlama;
    if (t == "mistral") return Architecture::kMistral;
    if (t == "qwen2") return Architecture::kQwen2;
    r.unsupported("model_type", "and 'architectures' is absent; supported: " + supported_architectures());
  }
  r.missing("architectures");
}

// RoPE: transformers 5 writes `rope_parameters` {rope_type, rope_theta, factor, ...}; earlier versions a
// top-level `rope_theta` and `rope_scaling` {type | rope_type, factor, ...}. Both are read, the older keys
// first where a file has both. Missing the new form would silently run a model at theta 10000 unscaled.
void parse_rope(const Reader& top, ModelConfig& c) {
  const char* section = top.has("rope_scaling") ? "rope_scaling" : top.has("rope_parameters") ? "rope_parameters" : nullptr;
  double theta = 10000.0;
  if (top.has("rope_parameters")) {
    const json& rp = top.at("rope_parameters");
    if (!rp.is_object()) top.bad("rope_parameters", "an object or null");
    theta = Reader(rp, top.source(), "rope_parameters").number("rope_theta", 0.0, 1e12, false, theta);
  }
  c.rope_theta = top.number("rope_theta", 0.0, 1e12, false, theta);
  if (section == nullptr) return;
  const json& rs = top.at(section);
  if (!rs.is_object()) top.bad(section, "an object or null");
  const Reader r(rs, top.source(), section);
  // transformers >= 4.43 writes rope_type; older files write type.
  const char* type_key = r.has("rope_type") ? "rope_type" : "type";
  const std::string type = r.string(type_key, true);
  if (type == "default") return;
  if (type == "linear") {
    c.rope_scaling.type = RopeScalingType::kLinear;
    c.rope_scaling.factor = r.number("factor", 0.0, 1e6, true);
    return;
  }
  if (type == "llama3") {
    c.rope_scaling.type = RopeScalingType::kLlama3;
    c.rope_scaling.factor = r.number("factor", 0.0, 1e6, true);
    c.rope_scaling.low_freq_factor = r.number("low_freq_factor", 0.0, 1e6, true);
    c.rope_scaling.high_freq_factor = r.number("high_freq_factor", 0.0, 1e6, true);
    c.rope_scaling.original_max_position_embeddings =
        r.integer("original_max_position_embeddings", 1, kMaxPositions, true);
    // The llama3 ramp divides by (high - low).
    if (c.rope_scaling.high_freq_factor <= c.rope_scaling.low_freq_factor) {
      std::ostringstream low;
      low << c.rope_scaling.low_freq_factor;
      r.bad("high_freq_factor", "a value above low_freq_factor " + low.str());
    }
    return;
  }
  r.unsupported(type_key, "supported: default, linear, llama3");
}

DType parse_torch_dtype(const Reader& r) {
  // Newer transformers write "dtype", older "torch_dtype".
  const char* key = r.has("torch_dtype") ? "torch_dtype" : "dtype";
  if (!r.has(key)) return DType::kF32;
  const std::string s = r.string(key, false);
  if (s == "float32" || s == "float") return DType::kF32;
  if (s == "float16" || s == "half") return DType::kF16;
  if (s == "bfloat16") return DType::kBF16;
  r.unsupported(key, "supported: float32, float16, bfloat16");
}

}  // namespace

ModelConfig parse_hf_config(const json& j, const std::string& source) {
  if (!j.is_object()) throw Error(ErrorCode::kParse, source + ": expected a JSON object, found " + brief(j));
  const Reader r(j, source);
  ModelConfig c;
  c.arch = parse_architecture(r);

  c.vocab_size = r.integer("vocab_size", 1, kMaxVocab, true);
  c.dim = r.integer("hidden_size", 1, kMaxDim, true);
  c.hidden_dim = r.integer("intermediate_size", 1, kMaxHidden, true);
  c.n_layers = r.integer("num_hidden_layers", 1, kMaxLayers, true);
  c.n_q_heads = r.integer("num_attention_heads", 1, kMaxHeads, true);
  c.n_kv_heads = r.integer("num_key_value_heads", 1, kMaxHeads, false, c.n_q_heads);
  if (r.has("head_dim")) {
    c.head_dim = r.integer("head_dim", 1, kMaxHeadDim, true);
  } else {
    if (c.dim % c.n_q_heads != 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  source + ": 'hidden_size' " + std::to_string(c.dim) + " is not divisible by 'num_attention_heads' " +
                      std::to_string(c.n_q_heads) + " (and there is no 'head_dim')");
    }
    c.head_dim = c.dim / c.n_q_heads;
    if (c.head_dim > kMaxHeadDim) r.bad("hidden_size", "hidden_size / num_attention_heads <= 1024");
  }
  if (c.head_dim % 2 != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                source + ": head dimension " + std::to_string(c.head_dim) + " ('head_dim' or 'hidden_size' / " +
                    "'num_attention_heads') is odd, RoPE needs it even");
  }
  if (c.n_q_heads % c.n_kv_heads != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                source + ": 'num_attention_heads' " + std::to_string(c.n_q_heads) +
                    " is not a multiple of 'num_key_value_heads' " + std::to_string(c.n_kv_heads));
  }

  // HF's own defaults where a key is optional.
  c.norm_eps = r.number("rms_norm_eps", 0.0, 0.5, false, 1e-6);
  const int64_t default_positions = c.arch == Architecture::kLlama     ? 2048
                                    : c.arch == Architecture::kMistral ? 4096 * 32
                                                                       : 32768;
  c.max_position_embeddings = r.integer("max_position_embeddings", 1, kMaxPositions, false, default_positions);
  parse_rope(r, c);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);

  switch (c.arch) {
    case Architecture::kLlama:
      c.attention_bias = r.boolean("attention_bias", false);
      if (r.boolean("mlp_bias", false)) r.unsupported("mlp_bias", "MLP biases are not supported");
      break;
    case Architecture::kMistral:
      c.sliding_window = r.integer("sliding_window", 0, kMaxPositions, false, 0);
      break;
    case Architecture::kQwen2:
      c.attention_bias = true;  // Qwen2's q/k/v projections always carry a bias
      if (r.boolean("use_sliding_window", false))
        c.sliding_window = r.integer("sliding_window", 0, kMaxPositions, false, 0);
      break;
  }
  if (r.has("hidden_act")) {
    const std::string act = r.string("hidden_act", false);
    if (act != "silu" && act != "swish") r.unsupported("hidden_act", "only silu is supported");
  }
  c.torch_dtype = parse_torch_dtype(r);
  c.bos_token_ids = r.token_ids("bos_token_id");
  c.eos_token_ids = r.token_ids("eos_token_id");
  return c;
}

ModelConfig load_hf_config(const std::filesystem::path& config_json) {
  const std::string source = config_json.string();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(config_json, ec)) throw Error(ErrorCode::kNotFound, source + ": no such file");
  std::ifstream in(config_json);
  if (!in) throw Error(ErrorCode::kNotFound, source + ": cannot open");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw Error(ErrorCode::kParse, source + ": malformed JSON: " + e.what());
  }
  return parse_hf_config(j, source);
}

}  // namespace skv
