#include "options.h"

namespace lorank::cli {

std::vector<Subcommand> all_subcommands() { return {train_subcommand(), sweep_subcommand()}; }

}  // namespace lorank::cli
