// Evidence: what recommend decides from (the data's facts and every module's gradient spectra),
// saved so the decision can be made again with other options (--max-rank, --budget-params,
// --format, --pattern) in milliseconds, without the model, the data or another probe.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "recommend.h"
#include "report.h"

namespace lorank {

struct Evidence {
  ReportContext context;  // the model, data, device and probe mode it was measured with
  DataFacts data;
  std::vector<ModuleEvidence> modules;
};

// The data's facts as recommendation.json and the evidence both write them.
nlohmann::json data_facts_json(const DataFacts& d);
std::string evidence_json(const Evidence& e);
// `where` names the source in errors. Throws on a wrong version, a missing key or a spectrum of
// the wrong length, naming the module.
Evidence parse_evidence(const std::string& text, const std::string& where);
Evidence load_evidence(const std::string& path);

}  // namespace lorank
