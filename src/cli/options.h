// CLI options are declared once, in a table per subcommand; the table registers them with CLI11,
// which validates numbers and ranges and generates --help from the same entries.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace lorank::cli {

using OptionTarget = std::variant<std::string*, int64_t*, double*, bool*, std::vector<int64_t>*,
                                  std::vector<double>*, std::vector<std::string>*>;

struct OptionSpec {
  std::string flags;  // "--model,-m"
  OptionTarget target;
  std::string help;
  double min = -1e300;  // numeric bounds, checked by CLI11 before the command runs
  double max = 1e300;
  std::vector<std::string> choices = {};  // allowed values for a string option
  bool required = false;
  // A string option given without a value takes this one ("--checkpointing" alone: on); empty:
  // the option needs a value.
  std::string bare = {};
};

void add_options(CLI::App& app, const std::vector<OptionSpec>& specs);

// The options' current values as command-line arguments that set them again (every option, so
// that another subcommand's defaults do not apply), leaving out the flags in `skip`. A false flag
// is written as its "!--no-..." form when it has one, else left out.
std::vector<std::string> option_args(const std::vector<OptionSpec>& specs,
                                     const std::set<std::string>& skip = {});

// Arguments for the options in `specs` whose value differs from the same table's in `defaults`.
std::vector<std::string> changed_option_args(const std::vector<OptionSpec>& specs,
                                             const std::vector<OptionSpec>& defaults);

// How the user invoked lorank (argv[0]: "lorank", "build/lorank"), for commands printed to run.
void set_program_name(const std::string& name);
const std::string& program_name();

// --seed's largest value in every subcommand: below 2^53, so that it survives JSON readers that
// hold numbers as doubles (results record it).
constexpr double k_max_seed = 9e15;

// Options every model-reading subcommand shares.
struct CommonOptions {
  std::string model_dir;
  std::string data_path;
  std::string device = "auto";
  std::string dtype = "auto";
  int64_t threads = 0;
  double gpu_memory_gib = 0;  // 0: the whole card
  bool json = false;
  bool quiet = false;
};
std::vector<OptionSpec> common_option_specs(CommonOptions& o);

// A subcommand: its table of options lives in its own file, behind `setup`.
struct Subcommand {
  std::string name, description;
  std::function<std::function<int()>(CLI::App&)> setup;  // registers options, returns the runner
};

Subcommand inspect_subcommand();
Subcommand train_subcommand();
Subcommand sweep_subcommand();
Subcommand probe_subcommand();
Subcommand recommend_subcommand();
std::vector<Subcommand> all_subcommands();  // subcommands.cpp: the list main() offers

// A command line CLI11 refused, said as lorank's errors are (what, expected, hint), with the
// subcommand a typo was closest to; returns the exit code, 2.
int usage_error(const CLI::App& app, int argc, char** argv, const CLI::ParseError& e);

// Throws a CLI::ValidationError for "--name=" with nothing after its first "=": CLI11 reads it as
// the bare option, which then takes the next argument as its value or, for --checkpointing, means
// on.
void check_empty_values(int argc, char** argv);
// After parsing, throws a CLI::ValidationError for a list of numbers given twice ("--ranks 4
// --ranks 8"), which CLI11 merges: one list is what the help describes, and a repeat is more often
// a slip (a grid edited in one place and not the other).
void check_repeated_lists(const CLI::App& app, int argc, char** argv);
// Refuses an argument that is not UTF-8 (a Latin-1 file name): lorank writes paths into JSON and
// trainer configs, which must be UTF-8, so it says so before any work, naming the option. So too
// for an existing relative path when the current folder's path is not UTF-8.
void check_utf8_arguments(int argc, char** argv);

}  // namespace lorank::cli
