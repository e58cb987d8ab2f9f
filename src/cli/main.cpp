// lorank's only catch site: library code throws lorank::Error; here it becomes a message and exit 1.
#include <c10/util/Exception.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "cpu_memory.h"
#include "error.h"
#include "options.h"
#include "progress.h"
#include "runtime.h"
#include "version.h"

namespace {

// A standard descriptor closed by the caller (`2>&-`) would go to the next file opened:
// metrics.jsonl received the progress lines. Each is held by /dev/null instead; stdout read-only,
// so that writing the result still fails and is said, as for any closed stdout.
void hold_closed_std_descriptors() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    const int got = ::open("/dev/null", fd == 2 ? O_WRONLY : O_RDONLY);
    if (got >= 0 && got != fd) ::close(got);  // only the lowest free descriptor can be fd
  }
}

// stdout is a pipe whose reader has closed it: an earlier write failed with EPIPE, whose errno is
// gone by the final flush.
bool reader_gone() {
  pollfd p{STDOUT_FILENO, POLLOUT, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLERR) != 0;
}

}  // namespace

int main(int argc, char** argv) {
  hold_closed_std_descriptors();
  // A reader gone (`| head`, a tee that died with the terminal) must not end a training without its
  // checkpoint: writes to it fail instead, and the run goes on (main accepts EPIPE on stdout).
  std::signal(SIGPIPE, SIG_IGN);
  lorank::trace("main");
  lorank::use_cpu_block_cache();
  std::vector<std::string> warnings = lorank::drop_invalid_thread_env();
  if (std::string w = lorank::address_space_warning(); !w.empty()) warnings.push_back(w);
  for (const std::string& w : warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  if (argc > 0) lorank::cli::set_program_name(argv[0]);
  CLI::App app{"lorank: which LoRA rank does this model and this data need?"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("lorank ") + lorank::kLorankVersion);
  std::function<int()> run;
  int rc = 1;
  try {
    for (const auto& sub : lorank::cli::all_subcommands()) {
      CLI::App* cmd = app.add_subcommand(sub.name, sub.description);
      auto runner = sub.setup(*cmd);
      cmd->callback([&run, runner] { run = runner; });
    }
    lorank::cli::check_empty_values(argc, argv);
    lorank::cli::check_utf8_arguments(argc, argv);
    app.parse(argc, argv);
    lorank::cli::check_repeated_lists(app, argc, argv);
    rc = run ? run() : 0;
  } catch (const CLI::ParseError& e) {
    rc = e.get_exit_code() == 0 ? app.exit(e) : lorank::cli::usage_error(app, argc, argv, e);
  } catch (const lorank::UsageError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    rc = 2;
  } catch (const lorank::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  } catch (const c10::Error& e) {  // its what() carries a C++ backtrace, which says nothing here
    std::fprintf(stderr,
                 "error: LibTorch: %s\n  hint: LORANK_TRACE=1 shows the step it failed in; "
                 "report it with the command that gave it\n",
                 e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr,
                 "error: out of memory (std::bad_alloc)\n  hint: a memory limit (ulimit -v, a "
                 "container's) may be below what LibTorch needs; lower --max-tokens or --batch, "
                 "or raise the limit\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
  // Every file is closed and every thread joined by now. Returning would run LibTorch's static
  // destructors and the CUDA context's teardown: 0.35-0.45 s of a 2.5 s recommend on an H200.
  if (lorank::tracing()) {
    const auto c = lorank::cpu_block_cache_stats();
    lorank::trace("CPU blocks of 32 MiB and more: " + std::to_string(c.hits) + " reused, " +
                  std::to_string(c.misses) + " mapped, " + std::to_string(c.cached_bytes >> 20) +
                  " MiB kept");
  }
  lorank::trace("exit");
  // A config or JSON redirected to a full disk must not end as an empty file and exit 0; a reader
  // that stopped early (`| head`) is not an error.
  errno = 0;
  const int flush_error = std::fflush(stdout) != 0 ? errno : 0;
  if ((flush_error != 0 || std::ferror(stdout)) && flush_error != EPIPE && !reader_gone()) {
    const std::string got = flush_error ? std::strerror(flush_error) : "a write failed";
    std::fprintf(
        stderr, "error: %s\n",
        lorank::error_message("stdout", "cannot write the output", "all bytes written", got,
                              "check where stdout goes: a full disk, a closed descriptor")
            .c_str());
    if (rc == 0) rc = 1;
  }
  std::fflush(stderr);
  std::_Exit(rc);
}
