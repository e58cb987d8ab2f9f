// A recommendation for people (a terminal report) and for programs (JSON, byte-identical for the
// same inputs: no timings, fixed key order, fixed number formatting).
#pragma once

#include <string>

#include "recommend.h"

namespace lorank {

struct ReportContext {
  std::string model_path, data_path;
  std::string device;
  std::string grad_mode;  // "exact" or "sketch"
  int64_t sketch_rank = 0;
  // Trainings of this model that fit at once on the probe's device (1 on the CPU, where they
  // would only share its cores): the check sweep's --jobs.
  int64_t trainings_fit = 1;
};

std::string recommendation_json(const Recommendation& rec, const ReportContext& ctx);
std::string recommendation_report(const Recommendation& rec, const ReportContext& ctx);

}  // namespace lorank
