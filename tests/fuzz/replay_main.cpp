// main() for a fuzz target in the normal build (no libFuzzer): runs every file of the corpus
// folder, then deterministic mutations of them, through LLVMFuzzerTestOneInput. Anything but a
// clean return fails: the input is saved as replay-failure.bin in the working folder and named on
// stderr.
//   usage: <target> CORPUS_DIR [MUTATIONS=3000]
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

char g_current[512] = "";  // the input being run, for the signal handler

void save_failure(const std::string& input) {
  std::ofstream("replay-failure.bin", std::ios::binary) << input;
}

const std::string* g_input = nullptr;

extern "C" void on_signal(int sig) {
  const char* head = "replay: crashed (signal) on ";
  (void)!write(2, head, std::strlen(head));
  (void)!write(2, g_current, std::strlen(g_current));
  (void)!write(2, "\n", 1);
  if (g_input) save_failure(*g_input);  // not async-signal-safe, but the process is dying anyway
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

uint64_t next(uint64_t& state) {  // splitmix64: the same mutations on every platform
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Tokens that steer parsers into their error paths: structure, numbers at type limits, bad UTF-8.
const char* const k_tokens[] = {"\"",
                                "{",
                                "}",
                                "[",
                                "]",
                                ",",
                                ":",
                                "\n",
                                "\r\n",
                                "\\",
                                "\\u0000",
                                "\\ud800",
                                "null",
                                "true",
                                "-1",
                                "0",
                                "1e308",
                                "-1e308",
                                "18446744073709551615",
                                "9223372036854775807",
                                "2147483648",
                                "-9223372036854775808",
                                "4294967296",
                                "\xFF",
                                "\xC0\x80",
                                "\xED\xA0\x80",
                                "\xF4\x90\x80\x80",
                                "\xE2\x96\x81",
                                "<s>",
                                "\"\"",
                                "{}",
                                "[]",
                                "\xEF\xBB\xBF",
                                "\0"};

void mutate_once(std::string& s, const std::vector<std::string>& corpus, uint64_t& rng) {
  size_t pos = s.empty() ? 0 : next(rng) % (s.size() + 1);
  switch (next(rng) % 7) {
    case 0:  // flip a bit
      if (!s.empty()) s[pos % s.size()] ^= static_cast<char>(1u << (next(rng) % 8));
      break;
    case 1:  // random byte
      if (!s.empty()) s[pos % s.size()] = static_cast<char>(next(rng));
      break;
    case 2: {  // insert a token
      const char* t = k_tokens[next(rng) % (sizeof k_tokens / sizeof *k_tokens)];
      s.insert(pos, t, std::max<size_t>(1, std::strlen(t)));
      break;
    }
    case 3:  // delete a range
      s.erase(pos, 1 + next(rng) % 16);
      break;
    case 4:  // duplicate a range
      if (!s.empty()) s.insert(pos, s.substr(next(rng) % s.size(), 1 + next(rng) % 32));
      break;
    case 5:  // truncate
      s.resize(pos);
      break;
    default: {  // splice in the tail of another corpus file
      const std::string& other = corpus[next(rng) % corpus.size()];
      s = s.substr(0, pos) + other.substr(other.empty() ? 0 : next(rng) % other.size());
      break;
    }
  }
}

bool run(const std::string& input, const std::string& name) {
  std::snprintf(g_current, sizeof g_current, "%s", name.c_str());
  g_input = &input;
  try {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
    return true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "replay: %s threw %s\n", name.c_str(), e.what());
  } catch (...) {
    std::fprintf(stderr, "replay: %s threw a non-std exception\n", name.c_str());
  }
  save_failure(input);
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR [MUTATIONS]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const long mutations = argc > 2 ? std::atol(argv[2]) : 3000;
  for (int sig : {SIGSEGV, SIGABRT, SIGILL, SIGFPE, SIGBUS}) std::signal(sig, on_signal);
  std::vector<std::string> names = lorank::list_dir(dir), corpus;
  for (const std::string& name : names) {
    std::ifstream in(dir + "/" + name, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    corpus.push_back(ss.str());
    if (!run(corpus.back(), name)) return 1;
  }
  if (corpus.empty()) {
    std::fprintf(stderr, "replay: no corpus files in %s\n", dir.c_str());
    return 1;
  }
  uint64_t rng = 0x5EED;
  for (long k = 0; k < mutations; ++k) {
    size_t from = next(rng) % corpus.size();
    std::string input = corpus[from];
    for (uint64_t n = 1 + next(rng) % 4; n > 0; --n) mutate_once(input, corpus, rng);
    if (!run(input, names[from] + " mutation " + std::to_string(k))) return 1;
  }
  std::printf("replay: %zu corpus files and %ld mutations ran cleanly\n", corpus.size(), mutations);
  return 0;
}
