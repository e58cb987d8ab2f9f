// A JSON value as a short text for error messages, safe on hostile input: nlohmann's dump()
// recurses once per nesting level, so describing a value nested a million levels deep would
// overflow the stack.
#pragma once

#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace lorank {

// Compact JSON text of `value` cut to at most `max_chars` characters ("..." marks a cut); nesting
// below a few levels is shown as [...] / {...}.
std::string json_excerpt(const nlohmann::json& value, size_t max_chars = 80);

// The text of an output (--json, recommendation.json, train_summary.json): indent 2, and bytes
// that are not UTF-8 (a path from a non-UTF-8 working folder) written as U+FFFD instead of an
// exception after the work is done.
std::string json_output(const nlohmann::json& value, int indent = 2);

}  // namespace lorank
