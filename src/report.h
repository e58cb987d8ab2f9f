// A recommendation for people (a terminal report) and for programs (JSON, byte-identical for the
// same inputs: no timings, fixed key order, fixed number formatting).
#pragma once

#include <string>
#include <vector>

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
  std::string program = "lorank";  // as invoked, so that printed commands run as they are
  // The options the probe read --data with, as arguments ("--max-examples", "1000"), and the
  // module types it probed when not all (--targets), so that a check trains what was probed;
  // unknown in evidence saved before they were kept.
  std::vector<std::string> data_args;
  std::vector<std::string> targets;
  std::vector<int64_t> layers;  // the layers probed when not all (--layers)
  bool data_args_known = false;
  std::vector<std::string> data_warnings;  // what reading --data warned about, for the JSON too
  // --device, --dtype and --gpu-memory as the probe was given them: the printed commands run
  // where the user asked.
  std::vector<std::string> device_args;
  // The probe's options given (--seed, --sample, --shards, ...) as arguments, and its compute
  // threads (they order BLAS sums, which moves the last digits): what re-deriving the
  // recommendation needs. Unknown (empty, 0) in evidence saved before they were kept.
  std::vector<std::string> probe_args;
  int64_t threads = 0;
  std::string lorank_version;  // of the binary that probed ("" in evidence saved before)
};

// "lorank sweep --model M --data D ... --ranks ... --out lorank-check", lorank as ctx.program:
// the sweep that checks `rec`, quoted for a POSIX shell.
std::string check_command(const Recommendation& rec, const ReportContext& ctx);
// A word as a POSIX shell reads it back: quoted only where it needs to be.
std::string shell_word(const std::string& w);
// "--model M --data D [data options] [device options]" as the check command passes them.
std::string model_and_data_args(const ReportContext& ctx);

std::string recommendation_json(const Recommendation& rec, const ReportContext& ctx);
std::string recommendation_report(const Recommendation& rec, const ReportContext& ctx);

}  // namespace lorank
