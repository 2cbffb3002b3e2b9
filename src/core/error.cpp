// Error helpers shared by every module.
#include "core/error.h"

namespace skv {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kParse: return "parse error";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kResource: return "resource limit";
    case ErrorCode::kInternal: return "internal error";
  }
  return "unknown";
}

void throw_assert_failure(const char* expr, const char* file, int line, const std::string& what) {
  std::string msg = std::string("internal error: assertion '") + expr + "' failed at " + file + ":" +
                    std::to_string(line);
  if (!what.empty()) msg += ": " + what;
  throw Error(ErrorCode::kInternal, msg);
}

}  // namespace skv
