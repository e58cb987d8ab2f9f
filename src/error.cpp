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

std::string join_hints(const std::string& first, const std::string& second) {
  return first.empty() ? second : first + "\n  hint: " + second;
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void fail(const std::string& where, const std::string& what, const std::string& expected,
          const std::string& got, const std::string& hint) {
  throw Error(where, what, expected, got, hint);
}

void fail_usage(const std::string& where, const std::string& what, const std::string& expected,
                const std::string& got, const std::string& hint) {
  throw UsageError(where, what, expected, got, hint);
}

}  // namespace lorank
