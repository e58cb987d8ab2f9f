// lorank::Error: the one exception type library code throws; only main() catches it.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace lorank {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A value the command line alone shows to be wrong (an unknown format, a repeated rank): the CLI
// exits 2 for it, as for the options CLI11 refuses, and 1 for a run that failed.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& message) : Error(message) {}
};

// Builds "<where>: <what>[ (expected <expected>, got <got>)]\n  hint: <hint>".
// `where` names the file and, when known, the line or tensor: "data.jsonl:12", "model.safetensors
// [model.layers.0.self_attn.q_proj.weight]".
std::string error_message(const std::string& where, const std::string& what,
                          const std::string& expected = "", const std::string& got = "",
                          const std::string& hint = "");

// The items separated by `sep`: the lists that messages and reports name.
std::string join(const std::vector<std::string>& items, const std::string& sep);
bool ends_with(const std::string& s, const std::string& suffix);

[[noreturn]] void fail(const std::string& where, const std::string& what,
                       const std::string& expected = "", const std::string& got = "",
                       const std::string& hint = "");
// As fail, throwing UsageError.
[[noreturn]] void fail_usage(const std::string& where, const std::string& what,
                             const std::string& expected = "", const std::string& got = "",
                             const std::string& hint = "");

}  // namespace lorank
