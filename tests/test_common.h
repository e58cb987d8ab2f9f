// Shared test helpers: where the fixtures live, temp dirs, running the CLI.
#pragma once

#include <string>

namespace lorank::test {

std::string asset(const std::string& rel);   // tests/assets/<rel>
std::string repo_path(const std::string& rel);  // <source dir>/<rel>
std::string shared_path(const std::string& rel);  // ../shared/<rel>, "" when absent
std::string make_temp_dir(const std::string& tag);
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& bytes);

struct CommandResult {
  int exit_code = 0;
  std::string output;  // stdout and stderr together
};
CommandResult run_lorank(const std::string& args);

}  // namespace lorank::test
