// Shared test helpers: where the fixtures live, temp dirs, running the CLI.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

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
CommandResult run_command(const std::string& command);  // through the shell, as a user would
CommandResult run_lorank(const std::string& args);
// Runs lorank, which must fail: non-zero exit, "error:" and every needle in its output.
CommandResult expect_failure(const std::string& args, const std::vector<std::string>& needles);

// Starts lorank in the background, stdout and stderr to `log`; reap it with waitpid.
pid_t spawn_lorank(const std::string& args, const std::string& log);
// Polls `ready` every few ms while `pid` runs; false when the process ended first (it is reaped).
bool wait_while_running(pid_t pid, const std::function<bool()>& ready);
// Lines of `path` containing `what` (0 when the file is missing).
int count_lines_with(const std::string& path, const std::string& what);

// The lorank::Error message `fn` throws; a test failure when it throws anything else or nothing.
std::string error_of(const std::function<void()>& fn);

}  // namespace lorank::test
