#include "json_excerpt.h"

#include <nlohmann/json.hpp>

namespace lorank {
namespace {

constexpr int k_max_depth = 4;

std::string scalar_text(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Stops adding once `out` is past `budget`; the caller cuts the result.
void append_excerpt(const nlohmann::json& value, int depth, size_t budget, std::string& out) {
  if (!value.is_structured()) {
    out += scalar_text(value);
    return;
  }
  const bool array = value.is_array();
  out += array ? '[' : '{';
  if (depth >= k_max_depth && !value.empty()) {
    out += "...";
  } else {
    bool first = true;
    for (auto it = value.begin(); it != value.end() && out.size() <= budget; ++it) {
      if (!first) out += ',';
      first = false;
      if (!array) out += scalar_text(nlohmann::json(it.key())) + ':';
      append_excerpt(it.value(), depth + 1, budget, out);
    }
  }
  out += array ? ']' : '}';
}

}  // namespace

std::string json_excerpt(const nlohmann::json& value, size_t max_chars) {
  std::string out;
  append_excerpt(value, 0, max_chars, out);
  if (out.size() <= max_chars) return out;
  size_t cut = max_chars > 3 ? max_chars - 3 : 0;
  while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;  // whole chars
  return out.substr(0, cut) + "...";
}

std::string json_output(const nlohmann::json& value, int indent) {
  return value.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace lorank
