// A Recommendation as the configuration each trainer reads: PEFT's adapter_config.json and
// snippets for axolotl, torchtune, LLaMA-Factory and unsloth. Where a trainer cannot express
// rsLoRA or per-module ranks, its snippet says so in a comment and how to get them.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "recommend.h"

namespace lorank {

// The formats export_config knows: "peft", "axolotl", "torchtune", "llama-factory", "unsloth".
std::vector<std::string> export_formats();

// The text of one format (deterministic: the same input gives the same bytes). Throws
// lorank::Error naming the format and the valid ones when `format` is unknown, and when the
// recommendation's rank_pattern does not give every module its rank.
std::string export_config(const Recommendation& rec, const std::string& format,
                          const std::string& base_model_path);

// The file each format is written to by write_exports ("adapter_config.json", "axolotl.yaml", ...).
std::string export_file_name(const std::string& format);

// Writes every format into `dir` (created when missing) under export_file_name, with the files of
// `with` (name, text), all or none. Refuses, before writing anything, when one of the files
// exists, unless `overwrite`.
void write_exports(const Recommendation& rec, const std::string& dir,
                   const std::string& base_model_path, bool overwrite,
                   const std::vector<std::pair<std::string, std::string>>& with = {});

}  // namespace lorank
