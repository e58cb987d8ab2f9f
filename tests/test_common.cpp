#include "test_common.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cpu_memory.h"
#include "error.h"
#include "files.h"

namespace fs = std::filesystem;

namespace lorank::test {

// In-process tests allocate CPU tensors as the lorank binary does.
const bool g_block_cache = (use_cpu_block_cache(), true);

std::string asset(const std::string& rel) { return std::string(LORANK_TEST_ASSETS) + "/" + rel; }

std::string repo_path(const std::string& rel) {
  return std::string(LORANK_SOURCE_DIR) + "/" + rel;
}

std::string shared_path(const std::string& rel) {
  fs::path p = fs::path(LORANK_SOURCE_DIR) / ".." / "shared" / rel;
  return fs::exists(p) ? p.lexically_normal().string() : "";
}

namespace {

std::vector<std::string>& temp_dirs() {
  static std::vector<std::string> dirs;
  return dirs;
}

// At exit, after the tests: their folders go when every test passed (ctest runs thousands, /tmp
// filled), and stay for a look when one failed or LORANK_KEEP_TEST_DIRS=1.
void remove_temp_dirs() {
  const char* keep = std::getenv("LORANK_KEEP_TEST_DIRS");
  const bool passed = ::testing::UnitTest::GetInstance()->Passed();
  if (!passed || (keep && std::string(keep) == "1")) {
    for (const auto& d : temp_dirs())
      if (fs::exists(d)) std::fprintf(stderr, "kept for a look: %s\n", d.c_str());
    return;
  }
  // remove_tree, not fs::remove_all, which crashes under pip's LibTorch (files.h says why).
  for (const auto& d : temp_dirs()) {
    try {
      remove_tree(d);
    } catch (const std::exception& e) {  // at exit: say it, never terminate
      std::fprintf(stderr, "could not remove %s: %s\n", d.c_str(), e.what());
    }
  }
}

}  // namespace

std::string make_temp_dir(const std::string& tag) {
  std::string tmpl = (fs::temp_directory_path() / ("lorank-" + tag + "-XXXXXX")).string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
  // Registered after gtest's UnitTest exists, so it runs before that is destroyed.
  if (temp_dirs().empty()) std::atexit(remove_temp_dirs);
  temp_dirs().push_back(tmpl);
  return tmpl;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

CommandResult run_lorank(const std::string& args) {
  return run_command(std::string(LORANK_BINARY) + " " + args);
}

CommandResult run_command(const std::string& command) {
  std::string cmd = command + " 2>&1";
  CommandResult result;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + cmd);
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) result.output.append(buf.data(), n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

CommandResult expect_failure(const std::string& args, const std::vector<std::string>& needles) {
  CommandResult r = run_lorank(args);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("error:"), std::string::npos) << r.output;
  for (const auto& n : needles)
    EXPECT_NE(r.output.find(n), std::string::npos) << n << "\n" << r.output;
  return r;
}

pid_t spawn_lorank(const std::string& args, const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    const std::string cmd = "exec " + std::string(LORANK_BINARY) + " " + args;
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

bool wait_while_running(pid_t pid, const std::function<bool()>& ready) {
  while (!ready()) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

int count_lines_with(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) n += line.find(what) != std::string::npos;
  return n;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a lorank::Error: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no error";
  return "";
}

}  // namespace lorank::test
