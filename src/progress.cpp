#include "progress.h"

#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <clocale>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

namespace lorank {

namespace {

std::string c_number(const char* text) {
  return c_decimal_point(text, std::localeconv()->decimal_point);
}

}  // namespace

std::string c_decimal_point(std::string text, const char* locale_point) {
  if (!locale_point || !*locale_point || std::strcmp(locale_point, ".") == 0) return text;
  const std::string point(locale_point);
  for (size_t at = text.find(point); at != std::string::npos; at = text.find(point, at + 1))
    text.replace(at, point.size(), ".");
  return text;
}

std::ostringstream c_locale_stream() {
  std::ostringstream out;
  out.imbue(std::locale::classic());
  return out;
}

std::string format_duration(double s) {
  char buf[32];
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, (int(s) % 3600) / 60);
  }
  return c_number(buf);
}

double seconds_since_start() {
  // Field 22 of /proc/self/stat: the start, in clock ticks since boot (CLOCK_BOOTTIME's clock).
  static const double start = [] {
    std::ifstream f("/proc/self/stat");
    std::string line;
    std::getline(f, line);
    std::istringstream rest(line.substr(line.rfind(')') + 2));  // the name may hold spaces
    std::string field;
    for (int i = 3; i <= 22 && rest >> field; ++i) {
    }
    const double ticks = field.empty() ? 0 : std::strtod(field.c_str(), nullptr);
    return ticks / double(sysconf(_SC_CLK_TCK));
  }();
  timespec now{};
  clock_gettime(CLOCK_BOOTTIME, &now);
  return double(now.tv_sec) + 1e-9 * double(now.tv_nsec) - start;
}

bool tracing() {
  static const bool on = [] {
    const char* v = std::getenv("LORANK_TRACE");
    return v && std::string(v) == "1";
  }();
  return on;
}

void trace(const std::string& what) {
  if (!tracing()) return;
  static std::mutex mutex;
  static double last = 0;
  std::lock_guard<std::mutex> lock(mutex);
  const double t = seconds_since_start();
  std::fprintf(stderr, "trace %.3fs (+%.3fs) %s\n", t, t - last, what.c_str());
  last = t;
}

namespace {

std::mutex& notice_mutex() {
  static std::mutex m;
  return m;
}

std::function<void(const std::string&)>& notice_handler() {
  static std::function<void(const std::string&)> h;
  return h;
}

}  // namespace

void notice(const std::string& text) {
  std::lock_guard<std::mutex> lock(notice_mutex());
  if (notice_handler()) return notice_handler()(text);
  std::fprintf(stderr, "\nwarning: %s\n", text.c_str());  // after a progress bar's line
  std::fflush(stderr);
}

void set_notice_handler(std::function<void(const std::string&)> handler) {
  std::lock_guard<std::mutex> lock(notice_mutex());
  notice_handler() = std::move(handler);
}

std::string count_of(int64_t n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

std::string format_number(const char* printf_format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, printf_format, v);
  return c_number(buf);
}

std::string format_exact(double v) {
  char buf[40];
  for (int digits = 6; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return c_number(buf);
}

std::string format_count(double n) {
  char buf[32];
  if (n >= 1e9) std::snprintf(buf, sizeof buf, "%.2fG", n / 1e9);
  else if (n >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else if (n >= 1e4) std::snprintf(buf, sizeof buf, "%.1fk", n / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", n);
  return c_number(buf);
}

std::string format_rate(double per_second, const std::string& unit) {
  char buf[48];
  if (per_second >= 10 || per_second <= 0) return format_count(per_second) + " " + unit + "/s";
  if (per_second >= 1) {
    std::snprintf(buf, sizeof buf, "%.1f %s/s", per_second, unit.c_str());
  } else {
    std::snprintf(buf, sizeof buf, "%.1f s/%s", 1 / per_second, unit.c_str());
  }
  return c_number(buf);
}

bool stderr_is_terminal() {
  const char* term = std::getenv("TERM");
  return ::isatty(STDERR_FILENO) != 0 && term && *term && std::strcmp(term, "dumb") != 0;
}

namespace {

// The terminal's width: a line wider than it wraps, and "\r\033[K" clears only its last row.
size_t terminal_columns() {
  struct winsize ws {};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  const char* columns = std::getenv("COLUMNS");
  const long n = columns ? std::strtol(columns, nullptr, 10) : 0;
  return n > 0 ? size_t(n) : 80;
}

// The first `n` bytes of `s`, not cutting a UTF-8 character.
std::string cut_to(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

}  // namespace

Progress::Progress(std::string label, int64_t total, std::string unit, bool enabled,
                   int64_t done_before)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      done_before_(done_before),
      done_(done_before),
      enabled_(enabled),
      tty_(stderr_is_terminal()),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (!finished_) finish();
}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double Progress::rate() const {
  double t = elapsed_s();
  return t > 0 ? double(done_ - done_before_) / t : 0.0;
}

void Progress::advance(int64_t n, const std::string& status) {
  done_ += n;
  if (!status.empty()) status_ = status;
  auto now = std::chrono::steady_clock::now();
  // A terminal redraws often; a log file gets a line every 10 s so it stays readable.
  double every = tty_ ? 0.2 : 10.0;
  // Off a terminal a line at the total would only precede the final one (an estimated total can
  // be passed, and the lines go on then).
  const bool at_end = total_ > 0 && done_ == total_;
  if (std::chrono::duration<double>(now - last_draw_).count() >= every && (tty_ || !at_end)) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::finish(const std::string& status) {
  if (finished_) return;
  finished_ = true;
  if (!status.empty()) status_ = status;
  draw(true);
}

void Progress::draw(bool final_line) {
  if (!enabled_) return;
  double r = rate();
  std::string line = label_;
  if (total_ > 0) {
    double frac = std::min(1.0, double(done_) / double(total_));
    const int width = 24;
    int filled = int(frac * width);
    line += " [" + std::string(filled, '#') + std::string(width - filled, '.') + "] ";
    char pct[16];
    std::snprintf(pct, sizeof pct, "%3.0f%%", frac * 100);
    line += pct;
  }
  // An estimated total (the probe's tokens) can be passed: the count is then the total.
  const int64_t total = std::max(total_, done_);
  line += " " + format_count(double(done_)) +
          (total_ > 0 ? "/" + format_count(double(total)) : "") + " " + unit_ + ", " +
          format_rate(r, unit_);
  if (final_line) {
    line += ", " + format_duration(elapsed_s());
  } else if (total_ > 0 && r > 0) {
    line += ", ETA " + format_duration(double(total_ - done_) / r);
  }
  if (!status_.empty()) line += ", " + status_;
  if (tty_) {
    if (!final_line) line = cut_to(line, terminal_columns() - 1);
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final_line ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace lorank
