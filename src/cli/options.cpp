#include "options.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include "progress.h"

namespace lorank::cli {

namespace {

// "--rslora,!--no-rslora" -> "--rslora"; "-r,--r,--rank" -> "--r".
std::string long_flag(const std::string& flags, bool negated) {
  size_t begin = 0;
  while (begin < flags.size()) {
    const size_t end = std::min(flags.find(',', begin), flags.size());
    const std::string name = flags.substr(begin, end - begin);
    if (!negated && name.rfind("--", 0) == 0) return name;
    if (negated && name.rfind("!--", 0) == 0) return name.substr(1);
    begin = end + 1;
  }
  return "";
}

// CLI11 reads "010" as octal 8 and "0x10" as 16; lorank's numbers are decimal, as Python's and
// the trainers' configs are. An integer's leading zeros are dropped; another base is refused.
bool to_decimal(std::string& in, bool integral) {
  if (!integral) return in.find_first_of("xX") == std::string::npos;
  const size_t start = !in.empty() && (in[0] == '+' || in[0] == '-') ? 1 : 0;
  // "1e6" and "2.5e7" for a count: a whole number in scientific notation, as the ranges print.
  if (in.find_first_of("eE") != std::string::npos &&
      in.find_first_of("xXnN") == std::string::npos) {
    char* end = nullptr;
    const double v = std::strtod(in.c_str(), &end);
    if (end == in.c_str() || *end != '\0' || !(std::fabs(v) < 9.0e15) || v != std::floor(v))
      return false;
    in = format_number("%.0f", v);
    return true;
  }
  if (start == in.size() || !std::all_of(in.begin() + std::ptrdiff_t(start), in.end(),
                                         [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  const size_t first = std::min(in.find_first_not_of('0', start), in.size() - 1);
  in.erase(start, first - start);
  return true;
}

// "0x10", "0o7", "0b1": a number CLI11 would read in another base.
bool other_base(const std::string& in) {
  const size_t start = !in.empty() && (in[0] == '+' || in[0] == '-') ? 1 : 0;
  return in.size() > start + 1 && in[start] == '0' &&
         std::string("xXoObB").find(in[start + 1]) != std::string::npos;
}

// CLI11's Range prints its bounds with %f ("0 not in range 0.000000 to 10" for a bound of 1e-12)
// and calls "abc" out of range: this says what was expected, as lorank's own errors do.
template <typename T>
void bound(CLI::Option* opt, const OptionSpec& s) {
  if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    const bool bounded = s.min > -1e300 || s.max < 1e300;
    const std::string kind = std::is_integral_v<T> ? "an integer" : "a number";
    const std::string range = bounded ? " in [" + format_number("%.10g", s.min) + ", " +
                                            format_number("%.10g", s.max) + "]"
                                      : "";
    const double lo = s.min, hi = s.max;
    opt->transform(CLI::Validator(
        [=](std::string& in) -> std::string {
          T v{};
          if (!to_decimal(in, std::is_integral_v<T>) || !CLI::detail::lexical_cast(in, v))
            return "expected " + kind + range + ", got '" + in + "'";
          if (bounded && !(double(v) >= lo && double(v) <= hi)) {
            return "expected " + kind + range + ", got " + in;
          }
          return "";
        },
        ""));
    opt->type_name((std::is_integral_v<T> ? "INT" : "FLOAT") + range);
  }
}

}  // namespace

namespace {

// "--out=~/rec" reaches lorank unexpanded (the shell expands "~" only at a word's start); a path
// that begins with "~/" means the home folder, not a folder named "~".
std::string expand_home(std::string& value) {
  if (value.rfind("~/", 0) != 0) return "";
  const char* home = std::getenv("HOME");
  // Without HOME (cron, some containers) the shell asks the password database, as here.
  if (!home || !*home) {
    const passwd* pw = ::getpwuid(::getuid());
    home = pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : nullptr;
  }
  if (!home) return "~ means the home folder, and neither HOME nor the user's entry names one";
  value = std::string(home) + value.substr(1);
  return "";
}

}  // namespace

void add_options(CLI::App& app, const std::vector<OptionSpec>& specs) {
  for (const auto& s : specs) {
    CLI::Option* opt = std::visit(
        [&](auto* target) -> CLI::Option* {
          using T = std::remove_pointer_t<decltype(target)>;
          if constexpr (std::is_same_v<T, bool>) {
            const size_t bang = s.flags.find(",!");
            if (bang == std::string::npos) return app.add_flag(s.flags, *target, s.help);
            // Two flags: CLI11 would print the pair as "--rslora,--no-rslora{false}".
            CLI::Option* on = app.add_flag(s.flags.substr(0, bang), *target, s.help);
            app.add_flag_callback(
                s.flags.substr(bang + 2), [target] { *target = false; },
                "turns " + long_flag(s.flags, false) + " off");
            return on;
          } else if constexpr (std::is_same_v<T, std::string>) {
            if (s.bare.empty()) {
              CLI::Option* o = app.add_option(s.flags, *target, s.help);
              o->transform(CLI::Validator(expand_home, "", "home"));
              return o->capture_default_str();
            }
            // No default_str: CLI11 would give it to the bare option; the help says both instead.
            const std::string bare = s.bare;
            CLI::Option* o = app.add_option(
                s.flags,
                [target, bare](const CLI::results_t& r) {
                  *target = r.empty() || r[0].empty() ? bare : r[0];
                  return true;
                },
                s.help + " (default " + *target + "; given alone: " + bare + ")");
            return o->expected(0, 1)->type_name("TEXT");
          } else {
            CLI::Option* o = app.add_option(s.flags, *target, s.help);
            if constexpr (std::is_arithmetic_v<T>) {
              bound<T>(o, s);
            } else {
              o->delimiter(',');
              if constexpr (!std::is_same_v<T, std::vector<std::string>>) {
                const bool integral = std::is_integral_v<typename T::value_type>;
                o->transform(CLI::Validator(
                    [integral](std::string& in) -> std::string {
                      if (to_decimal(in, integral) || !other_base(in))
                        return "";  // CLI11 reads the rest
                      return "not a decimal number: " + in;
                    },
                    ""));
              }
            }
            o->capture_default_str();
            return o;
          }
        },
        s.target);
    if (!s.choices.empty()) opt->check(CLI::IsMember(s.choices));
    if (s.required) opt->required();
  }
}

namespace {

std::string number_arg(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

template <typename T>
std::string joined(const std::vector<T>& values) {
  std::string out;
  for (const T& v : values) {
    if (!out.empty()) out += ",";
    if constexpr (std::is_same_v<T, std::string>) {
      out += v;
    } else if constexpr (std::is_same_v<T, double>) {
      out += number_arg(v);
    } else {
      out += std::to_string(v);
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> option_args(const std::vector<OptionSpec>& specs,
                                     const std::set<std::string>& skip) {
  std::vector<std::string> args;
  for (const OptionSpec& s : specs) {
    const std::string flag = long_flag(s.flags, false);
    if (flag.empty() || skip.count(flag)) continue;
    std::visit(
        [&](auto* target) {
          using T = std::remove_pointer_t<decltype(target)>;
          if constexpr (std::is_same_v<T, bool>) {
            const std::string off = long_flag(s.flags, true);
            if (*target) args.push_back(flag);
            if (!*target && !off.empty()) args.push_back(off);
          } else if constexpr (std::is_same_v<T, std::string>) {
            if (!target->empty()) args.insert(args.end(), {flag, *target});
          } else if constexpr (std::is_same_v<T, double>) {
            args.insert(args.end(), {flag, number_arg(*target)});
          } else if constexpr (std::is_arithmetic_v<T>) {
            args.insert(args.end(), {flag, std::to_string(*target)});
          } else {
            if (!target->empty()) args.insert(args.end(), {flag, joined(*target)});
          }
        },
        s.target);
  }
  return args;
}

namespace {
std::string g_program = "lorank";
}  // namespace

void set_program_name(const std::string& name) {
  if (!name.empty()) g_program = name;
}

const std::string& program_name() {
  return g_program;
}

std::vector<std::string> changed_option_args(const std::vector<OptionSpec>& specs,
                                             const std::vector<OptionSpec>& defaults) {
  std::vector<std::string> args;
  for (size_t i = 0; i < specs.size() && i < defaults.size(); ++i) {
    std::vector<std::string> now = option_args({specs[i]});
    if (now != option_args({defaults[i]})) args.insert(args.end(), now.begin(), now.end());
  }
  return args;
}

std::vector<OptionSpec> common_option_specs(CommonOptions& o) {
  return {
      {"--model,-m", &o.model_dir,
       "Hugging Face model folder (config.json, *.safetensors, tokenizer)"},
      {"--data,-d", &o.data_path, "dataset: JSONL, JSON array or CSV"},
      {"--device", &o.device,
       "where to run: auto, cpu, cuda, cuda:N, or a list (cuda:0,cuda:1; all) to split the model's "
       "layers over (auto splits a model too large for one GPU)"},
      {"--dtype",
       &o.dtype,
       "compute dtype (auto: bf16 on CUDA, fp32 on CPU)",
       -1e300,
       1e300,
       {"auto", "fp32", "bf16"}},
      {"--gpu-memory", &o.gpu_memory_gib,
       "GiB of CUDA memory to use (0: the card's); batches fit it and more fails, as on a card "
       "that size",
       0, 1e6},
      {"--threads", &o.threads,
       "CPU threads for compute and tokenizing (0: the default, under OpenBLAS its threads; "
       "every core for tokenizing)",
       0, 1024},
      {"--json", &o.json, "print machine-readable JSON instead of tables"},
      {"--quiet,-q", &o.quiet,
       "no progress bars or status lines (warnings and errors still print)"},
  };
}

}  // namespace lorank::cli
