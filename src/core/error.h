// Errors: skv::Error for anything bad input can reach (files, flags, limits); SKV_ASSERT for bugs only.
// Nothing below main() calls exit(): the CLI turns an Error into "error: <message>" and a non-zero exit.
#pragma once

#include <stdexcept>
#include <string>

namespace skv {

enum class ErrorCode {
  kInvalidArgument,  // a flag, a parameter or a request that cannot be honoured
  kNotFound,         // a file, a directory, a tensor, a key
  kParse,            // malformed JSON, truncated or inconsistent file contents
  kUnsupported,      // an architecture, a dtype or a feature this build does not handle
  kResource,         // memory, context length, batch size: the numbers are in the message
  kInternal,         // a bug: an invariant did not hold
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] void throw_assert_failure(const char* expr, const char* file, int line, const std::string& what);

}  // namespace skv

// Invariants of the code itself, never of input: a failure is a bug in shadowkv.
#define SKV_ASSERT(cond)                                                             \
  do {                                                                               \
    if (!(cond)) ::skv::throw_assert_failure(#cond, __FILE__, __LINE__, std::string()); \
  } while (0)
#define SKV_ASSERT_MSG(cond, msg)                                                     \
  do {                                                                                \
    if (!(cond)) ::skv::throw_assert_failure(#cond, __FILE__, __LINE__, (msg));        \
  } while (0)
