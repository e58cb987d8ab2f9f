// lorank::Error: the one exception type library code throws; only main() catches it.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace lorank {

// Builds "<where>: <what>[ (expected <expected>, got <got>)]\n  hint: <hint>".
// `where` names the file and, when known, the line or tensor: "data.jsonl:12", "model.safetensors
// [model.layers.0.self_attn.q_proj.weight]".
std::string error_message(const std::string& where, const std::string& what,
                          const std::string& expected = "", const std::string& got = "",
                          const std::string& hint = "");
// Two hints as error_message prints them: `second` on a "hint:" line after `first` (may be empty).
std::string join_hints(const std::string& first, const std::string& second);

// what() is the whole message as the CLI prints it; the parts are kept for library callers that
// show them apart (a hint in another colour, the file as a link). An Error built from a message
// alone has that message as its reason and the other parts empty.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message), reason_(message) {}
  Error(const std::string& where, const std::string& reason, const std::string& expected,
        const std::string& got, const std::string& hint)
      : std::runtime_error(error_message(where, reason, expected, got, hint)),
        where_(where),
        reason_(reason),
        expected_(expected),
        got_(got),
        hint_(hint) {}
  const std::string& where() const { return where_; }  // the file, line or tensor; may be ""
  const std::string& reason() const { return reason_; }
  const std::string& expected() const { return expected_; }
  const std::string& got() const { return got_; }
  const std::string& hint() const { return hint_; }  // names CLI flags where one is the fix

 private:
  std::string where_, reason_, expected_, got_, hint_;
};

// A value the command line alone shows to be wrong (an unknown format, a repeated rank): the CLI
// exits 2 for it, as for the options CLI11 refuses, and 1 for a run that failed.
class UsageError : public Error {
 public:
  using Error::Error;
};

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
