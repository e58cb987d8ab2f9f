#include "options.h"

namespace lorank::cli {

std::vector<Subcommand> all_subcommands() { return {}; }

}  // namespace lorank::cli
