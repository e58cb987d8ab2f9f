// Progress for long work: a bar with rate and ETA on a terminal, periodic plain lines otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>

namespace lorank {

class Progress {
 public:
  // `unit` names what `total` counts ("tok", "ex", "step"); total 0 means unknown. A resumed run
  // starts at `done_before` of its total; the rate and ETA count only what this run does.
  Progress(std::string label, int64_t total, std::string unit, bool enabled = true,
           int64_t done_before = 0);
  ~Progress();
  void advance(int64_t n, const std::string& status = "");  // status: e.g. "loss 2.31"
  void finish(const std::string& status = "");
  double elapsed_s() const;
  double rate() const;  // units per second so far

 private:
  void draw(bool final_line);
  std::string label_, unit_, status_;
  int64_t total_, done_before_, done_;
  bool enabled_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// stderr is a terminal that understands "\r\033[K" (not TERM=dumb, as Emacs' shell sets): bars
// redraw in place there; elsewhere they print a plain line now and then.
bool stderr_is_terminal();

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12.3s"
std::string format_count(double n);           // "1.23M", "45.6k", "789"
// "45.6k tok/s", "3.4 step/s", or "2.5 s/step" under one a second.
std::string format_rate(double per_second, const std::string& unit);
// One number through a printf format (e.g. "%.3f"): the formatting the reports share.
std::string format_number(const char* printf_format, double v);
// A number printf wrote, with C's decimal point: printf spells numbers in the caller's LC_NUMERIC,
// and a library caller's de_DE "1,5" is invalid Python and a string in YAML. Every format_* uses
// it.
std::string c_decimal_point(std::string text, const char* locale_point);
// A stream that writes numbers as C does ("1024", "1.5"), not in the global C++ locale.
std::ostringstream c_locale_stream();
// The fewest %g digits that read back as `v` ("0.001", "0.0010000001"): for values a command or
// a folder name must keep exactly.
std::string format_exact(double v);
// "1 rank", "3 ranks": a count and its noun, plural by adding "s".
std::string count_of(int64_t n, const std::string& noun);

// What the library says while work goes on and the caller may want to know (a CUDA
// out-of-memory that lorank recovered from by smaller batches): "\nwarning: TEXT\n" on stderr,
// unless a handler is set (a library caller's log; an empty function restores stderr). Safe from
// any thread; the handler is called under a lock.
void notice(const std::string& text);
void set_notice_handler(std::function<void(const std::string&)> handler);

// Seconds since the process started (its exec, so dynamic loading counts); 10 ms resolution.
double seconds_since_start();
// With LORANK_TRACE=1 in the environment, "trace 0.412s (+0.103s) what" on stderr: where the
// fixed cost of a short run goes. Safe from any thread.
void trace(const std::string& what);
bool tracing();

}  // namespace lorank
