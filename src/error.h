// lorank::Error: the one exception type library code throws; only main() catches it.
#pragma once

#include <stdexcept>
#include <string>

namespace lorank {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Builds "<where>: <what>[ (expected <expected>, got <got>)]\n  hint: <hint>".
// `where` names the file and, when known, the line or tensor: "data.jsonl:12", "model.safetensors
// [model.layers.0.self_attn.q_proj.weight]".
std::string error_message(const std::string& where, const std::string& what,
                          const std::string& expected = "", const std::string& got = "",
                          const std::string& hint = "");

[[noreturn]] void fail(const std::string& where, const std::string& what,
                       const std::string& expected = "", const std::string& got = "",
                       const std::string& hint = "");

}  // namespace lorank
