// lorank's only catch site: library code throws lorank::Error; here it becomes a message and exit 1.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "error.h"
#include "options.h"

int main(int argc, char** argv) {
  CLI::App app{"lorank: which LoRA rank does this model and this data need?"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "lorank 0.1.0");
  std::function<int()> run;
  for (const auto& sub : lorank::cli::all_subcommands()) {
    CLI::App* cmd = app.add_subcommand(sub.name, sub.description);
    auto runner = sub.setup(*cmd);
    cmd->callback([&run, runner] { run = runner; });
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return run ? run() : 0;
  } catch (const lorank::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
  return 1;
}
