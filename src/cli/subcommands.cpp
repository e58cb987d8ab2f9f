#include "options.h"

namespace lorank::cli {

std::vector<Subcommand> all_subcommands() {
  return {inspect_subcommand(), recommend_subcommand(), probe_subcommand(), train_subcommand(), sweep_subcommand()};
}

}  // namespace lorank::cli
