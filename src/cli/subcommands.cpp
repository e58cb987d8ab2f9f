#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <regex>

#include "error.h"
#include "options.h"
#include "tokenizer_unicode.h"

namespace lorank::cli {

std::vector<Subcommand> all_subcommands() {
  return {inspect_subcommand(), recommend_subcommand(), probe_subcommand(), train_subcommand(), sweep_subcommand()};
}

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// CLI11's wording of two common slips, said as lorank's other errors are.
std::string plain_message(const std::string& what) {
  std::smatch m;
  if (std::regex_match(what, m, std::regex("(\\S+): At Most 1 required but received (\\d+)")))
    return m[1].str() + ": given " + m[2].str() + " times (expected once)";
  if (std::regex_match(what, m, std::regex("Could not convert: (\\S+) = (.*)")))
    return m[1].str() + ": not a number, or a comma-separated list of numbers (got " + m[2].str() +
           ")";
  return what;
}

}  // namespace

void check_empty_values(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") return;
    if (arg.size() > 3 && arg.rfind("--", 0) == 0 && arg.find('=') == arg.size() - 1) {
      const std::string name = arg.substr(0, arg.size() - 1);
      throw CLI::ValidationError(
          name, "nothing after '=' (expected " + name + "=VALUE or " + name + " VALUE)");
    }
  }
}

void check_repeated_lists(const CLI::App& app, int argc, char** argv) {
  const CLI::App* cmd = nullptr;
  for (const CLI::App* c : app.get_subcommands({})) {
    if (argc > 1 && argv[1] == c->get_name()) cmd = c;
  }
  if (!cmd) return;
  for (const CLI::Option* opt : cmd->get_options()) {
    // CLI11 refuses a repeated scalar itself; text lists (--targets, --rank-pattern) may be given
    // entry by entry.
    const std::string type = opt->get_type_name();
    if (opt->get_items_expected_max() <= 1 || (type != "INT" && type != "FLOAT")) continue;
    int given = 0;
    for (int i = 2; i < argc && std::string(argv[i]) != "--"; ++i) {
      const std::string arg = argv[i];
      if (arg.size() > 1 && arg[0] == '-' && opt->check_name(arg.substr(0, arg.find('=')))) ++given;
    }
    if (given > 1) {
      throw CLI::ValidationError(
          opt->get_name(), "given " + std::to_string(given) +
                               " times (expected one comma-separated list: " + opt->get_name() +
                               " " + join(opt->results(), ",") + ")");
    }
  }
}

void check_utf8_arguments(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t bad = tok::first_invalid_utf8(arg);
    if (bad == std::string::npos) continue;
    std::string name = arg.rfind("--", 0) == 0 ? arg.substr(0, arg.find('=')) : "argument";
    if (name == "argument" && i > 1 && argv[i - 1][0] == '-') name = argv[i - 1];
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned char>(arg[bad]));
    throw CLI::ValidationError(
        tok::valid_utf8(name),
        "not valid UTF-8 (expected UTF-8 text, which the JSON outputs and trainer configs that "
        "name it need, got byte " +
            std::string(byte) + " at offset " + std::to_string(bad) +
            "); rename the file or folder, e.g. convmv -f latin1 -t utf-8");
  }
  // A relative path is written out absolute, through the current folder: that must be UTF-8 too.
  char cwd[4096];
  if (!::getcwd(cwd, sizeof cwd) || tok::first_invalid_utf8(cwd) == std::string::npos) return;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos)
      arg = arg.substr(arg.find('=') + 1);
    struct stat st {};
    if (arg.empty() || arg[0] == '/' || arg[0] == '-' || ::stat(arg.c_str(), &st) != 0) continue;
    throw CLI::ValidationError(
        tok::valid_utf8(arg),
        "a relative path in a folder whose path is not valid UTF-8 (expected UTF-8 paths, which "
        "the JSON outputs and trainer configs that name it need, got the current folder " +
            tok::valid_utf8(cwd) + "); give the path from / or run lorank from another folder");
  }
}

int usage_error(const CLI::App& app, int argc, char** argv, const CLI::ParseError& e) {
  std::string names, sub, closest;
  size_t best = 3;  // further than two edits away is not a typo of it
  for (const CLI::App* c : app.get_subcommands({})) {
    names += (names.empty() ? "" : ", ") + c->get_name();
    for (int i = 1; i < argc; ++i) {
      if (argv[i] == c->get_name()) sub = c->get_name();
    }
    if (argc > 1 && argv[1][0] != '-' && edit_distance(argv[1], c->get_name()) < best) {
      best = edit_distance(argv[1], c->get_name());
      closest = c->get_name();
    }
  }
  const std::string prog = program_name();
  if (sub.empty() && argc > 1 && argv[1][0] != '-') {
    std::fprintf(stderr, "error: %s: unknown subcommand (expected one of %s)\n  hint: %s\n",
                 argv[1], names.c_str(),
                 closest.empty() ? (prog + " --help describes them").c_str()
                                 : ("did you mean " + prog + " " + closest + "?").c_str());
  } else if (argc == 1) {
    std::fprintf(stderr, "%s\nerror: no subcommand (expected one of %s)\n", app.help().c_str(),
                 names.c_str());
  } else if (sub.empty()) {
    std::fprintf(stderr, "error: %s\n  hint: %s --help describes the subcommands\n",
                 plain_message(e.what()).c_str(), prog.c_str());
  } else {
    std::fprintf(stderr,
                 "error: %s\n  hint: %s %s --help lists the options, their ranges and defaults\n",
                 plain_message(e.what()).c_str(), prog.c_str(), sub.c_str());
  }
  return 2;
}

}  // namespace lorank::cli
