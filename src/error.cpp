#include "error.h"

namespace lorank {

std::string error_message(const std::string& where, const std::string& what,
                          const std::string& expected, const std::string& got,
                          const std::string& hint) {
  std::string msg = where.empty() ? what : where + ": " + what;
  if (!expected.empty() && !got.empty()) {
    msg += " (expected " + expected + ", got " + got + ")";
  } else if (!expected.empty()) {
    msg += " (expected " + expected + ")";
  } else if (!got.empty()) {
    msg += " (" + got + ")";  // the system's reason, e.g. "No such file or directory"
  }
  if (!hint.empty()) msg += "\n  hint: " + hint;
  return msg;
}

void fail(const std::string& where, const std::string& what, const std::string& expected,
          const std::string& got, const std::string& hint) {
  throw Error(error_message(where, what, expected, got, hint));
}

}  // namespace lorank
