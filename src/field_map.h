// Datasets whose columns have other names than the schemas lorank reads (question/answer,
// input/output, Dolly's instruction/context/response): a map from lorank's field names to the
// file's, as LLaMA-Factory's dataset_info.json "columns" and axolotl's field_* settings give one.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "records.h"

namespace lorank {

// lorank's field name -> the file's column: {"prompt": "question", "completion": "answer"}.
using FieldMap = std::map<std::string, std::string>;

// The names a map may give columns: what the text, prompt/completion, alpaca and messages schemas
// read.
const std::vector<std::string>& field_map_targets();

// Reads "prompt=question" entries; throws UsageError naming `option` for a malformed entry, a
// name no schema reads, or a name or column given twice.
FieldMap parse_field_map(const std::vector<std::string>& entries,
                         const std::string& option = "--fields");

// Moves each mapped column of `rec` under lorank's name (replacing a field of that name). A
// column the record lacks throws at "path:line", unless it maps to an optional field (input,
// system, history).
void rename_fields(Record& rec, const FieldMap& fields, const std::string& path);

// For a record no schema fits: the --fields value that reads its keys as prompt and completion
// (or as the Alpaca template's fields), and what it does, in a sentence; "" when its keys suggest
// none.
std::string suggest_field_map(const nlohmann::ordered_json& fields);

}  // namespace lorank
