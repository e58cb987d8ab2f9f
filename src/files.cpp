#include "files.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "error.h"

namespace lorank {

std::vector<std::string> list_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d)
    fail(dir, "cannot list the folder", "a readable folder", std::strerror(errno),
         "check the path and its permissions");
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

namespace {

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  return ::remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

void write_all(int fd, const uint8_t* data, size_t n, const std::string& where) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      fail(where, "cannot write", "all bytes written", std::strerror(errno),
           "check free disk space and permissions");
    data += w;
    n -= static_cast<size_t>(w);
  }
}

// ".<name>.<tag>-<pid>-<random>" in `path`'s folder.
std::string sibling_name(const std::string& path, const char* tag, std::random_device& rd) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::ostringstream name;
  name << dir << "/." << base << "." << tag << "-" << ::getpid() << "-" << std::hex << rd();
  return name.str();
}

// A fresh sibling of `path`, created with O_EXCL so no other writer can share it.
int create_temp_beside(const std::string& path, std::string* temp) {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    *temp = sibling_name(path, "tmp", rd);
    int fd = ::open(temp->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;
}

const std::string k_no_copy = "\n";  // the file exists but could not be linked

// A second name (a hard link) for the file at `path`, so that replacing it can be undone: "" when
// there is no such file, k_no_copy where the file system cannot link.
std::string link_old_beside(const std::string& path) {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    // Named like a temp file, so that a killed process's is cleaned up as one (trainer.cpp).
    const std::string name = sibling_name(path, "tmp-old", rd);
    if (::link(path.c_str(), name.c_str()) == 0) return name;
    if (errno == ENOENT) return "";
    if (errno != EEXIST) return k_no_copy;
  }
  return k_no_copy;
}

bool is_copy(const std::string& old) {
  return !old.empty() && old != k_no_copy;
}

// Moves the finished temp file into place; link() refuses an existing target atomically.
void publish(const std::string& temp, const std::string& path, bool overwrite) {
  const char* exists_hint = "choose another output path, or remove the file first";
  if (!overwrite) {
    if (::link(temp.c_str(), path.c_str()) == 0) {
      ::unlink(temp.c_str());
      return;
    }
    struct stat st;
    if (errno == EEXIST || ::stat(path.c_str(), &st) == 0)
      fail(path, "refusing to overwrite an existing file", "", "", exists_hint);
  }
  if (::rename(temp.c_str(), path.c_str()) != 0)
    fail(path, "cannot move the written file into place", "", std::strerror(errno),
         "check permissions of the output folder");
}

}  // namespace

std::string read_text_file(const std::string& path, const std::string& hint) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open the file", "a readable file", "an open error", hint);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) fail(path, "cannot read the file", "a readable file", "a read error", hint);
  return buffer.str();
}

std::string absolute_path(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path p = std::filesystem::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

std::string executable_dir() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

void remove_tree(const std::string& path) {
  if (::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
    fail(path, "cannot remove", "", std::strerror(errno), "check permissions");
}

namespace {

// The chunks written, flushed and closed in a fresh temp file beside `path`; returns its name.
// Errors name the output, and the temp file is removed.
std::string write_temp_beside(const std::string& path, const std::vector<ByteRange>& chunks) {
  std::string temp;
  int fd = create_temp_beside(path, &temp);
  if (fd < 0)
    fail(path, "cannot create a temporary file next to the output", "", std::strerror(errno),
         "check that the output folder exists and is writable");
  try {
    for (const auto& [data, n] : chunks) write_all(fd, data, n, path);
    if (::fsync(fd) != 0)
      fail(path, "cannot flush to disk", "", std::strerror(errno), "check free disk space");
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) fail(path, "cannot close", "", std::strerror(errno), "check free disk space");
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  return temp;
}

std::vector<ByteRange> chunks_of(const std::string& bytes) {
  return {{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}};
}

void refuse_existing(const std::string& path, bool overwrite) {
  struct stat st;
  if (!overwrite && ::stat(path.c_str(), &st) == 0)
    fail(path, "refusing to overwrite an existing file", "", "",
         "choose another output path, or remove the file first");
}

}  // namespace

void write_file_atomic(const std::string& path, const std::vector<ByteRange>& chunks,
                       bool overwrite) {
  refuse_existing(path, overwrite);
  const std::string temp = write_temp_beside(path, chunks);
  try {
    publish(temp, path, overwrite);
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
}

void write_file_atomic(const std::string& path, const std::string& bytes, bool overwrite) {
  write_file_atomic(path, chunks_of(bytes), overwrite);
}

void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files,
                        bool overwrite) {
  std::vector<std::string> temps, olds;
  size_t moved = 0;
  try {
    for (const auto& [path, bytes] : files) refuse_existing(path, overwrite);
    for (const auto& [path, bytes] : files) {
      temps.push_back(write_temp_beside(path, chunks_of(bytes)));
    }
    for (const auto& [path, bytes] : files) olds.push_back(link_old_beside(path));
    for (; moved < files.size(); ++moved) publish(temps[moved], files[moved].first, overwrite);
  } catch (...) {
    // A move failing midway (the target a folder, a file that appeared since the check) puts the
    // files already moved back as they were.
    for (size_t i = 0; i < moved; ++i) {
      if (olds[i].empty()) ::unlink(files[i].first.c_str());
      if (is_copy(olds[i])) ::rename(olds[i].c_str(), files[i].first.c_str());
    }
    for (size_t i = moved; i < temps.size(); ++i) ::unlink(temps[i].c_str());
    for (size_t i = moved; i < olds.size(); ++i) {
      if (is_copy(olds[i])) ::unlink(olds[i].c_str());
    }
    throw;
  }
  for (const std::string& old : olds) {
    if (is_copy(old)) ::unlink(old.c_str());
  }
}

namespace {

bool is_dir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string parent_of(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : p.substr(0, slash);
}

void check_writable_dir(const std::string& dir, const std::string& path,
                        const std::string& option) {
  if (::access(dir.c_str(), W_OK) != 0) {
    fail(path, option + ": cannot write there", "a folder you can write to",
         dir + ": " + std::strerror(errno), "choose another " + option + " or fix the permissions");
  }
}

}  // namespace

void check_can_write_file(const std::string& path, const std::string& option) {
  if (is_dir(path)) {
    fail(path, option + ": is a folder", "a file name", "a folder",
         "name a file, e.g. " + (path.back() == '/' ? path : path + "/") + "evidence.json");
  }
  const std::string dir = parent_of(path);
  if (!is_dir(dir)) {
    fail(path, option + ": its folder does not exist", "an existing folder", dir,
         "create " + dir + " first, or choose another " + option);
  }
  check_writable_dir(dir, path, option);
}

void check_can_write_folder(const std::string& dir, const std::string& option) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) == 0 && S_ISLNK(st.st_mode) && ::stat(dir.c_str(), &st) != 0 &&
      errno == ENOENT) {
    std::error_code ec;
    std::string target = std::filesystem::read_symlink(dir, ec).string();
    if (!target.empty() && target[0] != '/') target = parent_of(dir) + "/" + target;
    fail(dir, option + ": a symbolic link to a place that does not exist",
         "a folder, or a path where one can be made", "it points to " + target,
         "create " + target + " first, remove the link, or choose another " + option);
  }
  std::string p = dir;
  while (::stat(p.c_str(), &st) != 0) {  // the nearest ancestor that exists
    const std::string up = parent_of(p);
    if (up == p) break;
    p = up;
  }
  if (!S_ISDIR(st.st_mode)) {
    fail(dir, option + ": a file is in the way", "a folder, or a path where one can be made",
         p + " is a file", "choose another " + option);
  }
  check_writable_dir(p, dir, option);
}

namespace {

// The folder a FolderLock made, removed if a signal ends the process before the run's own
// handler is in place (Ctrl-C while the model loads): a fixed buffer, as the handler may not
// allocate.
char g_made_dir[4096];

constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP};

void remove_made_folder(int sig, siginfo_t*, void*) {
  if (g_made_dir[0]) ::rmdir(g_made_dir);  // only when still empty
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// Undoes what a FolderLock made: the folder, when still empty, and the signals' note of it.
void remove_made_folder_now(const std::string& dir) {
  g_made_dir[0] = '\0';
  ::rmdir(dir.c_str());  // only when still empty: a failed start leaves nothing
}

void remove_made_folder_on_signals(const std::string& dir) {
  if (dir.size() >= sizeof g_made_dir) return;
  std::memcpy(g_made_dir, dir.c_str(), dir.size() + 1);
  handle_stop_signals(remove_made_folder);
}

}  // namespace

void handle_stop_signals(void (*handler)(int, siginfo_t*, void*)) {
  for (int sig : kStopSignals) {
    struct sigaction old {};
    ::sigaction(sig, nullptr, &old);
    if (old.sa_handler == SIG_IGN) continue;  // nohup's SIGHUP stays ignored
    struct sigaction sa {};
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
  }
}

FolderLock::FolderLock(const std::string& dir, const std::string& option) : dir_(dir) {
  // The handler that removes the folder is in place before the folder is made: a signal the
  // kernel hands to another thread (LibTorch's pools do not block it) runs it too. This thread's
  // mask only orders its own signals after the handler.
  sigset_t stops, before;
  sigemptyset(&stops);
  for (int sig : kStopSignals) sigaddset(&stops, sig);
  ::pthread_sigmask(SIG_BLOCK, &stops, &before);
  std::error_code exists_ec;
  const bool absent = !std::filesystem::exists(dir, exists_ec) && !exists_ec;
  if (absent) remove_made_folder_on_signals(dir);
  std::error_code ec;
  made_ = std::filesystem::create_directories(dir, ec);
  if (absent && !made_) g_made_dir[0] = '\0';  // not ours after all: nothing to remove
  ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
  if (ec) fail(dir, option + ": cannot create the folder", "a writable place", ec.message());
  try {
    fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0)
      fail(dir, option + ": cannot open the folder", "a readable folder", strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      ::close(fd_);
      fd_ = -1;
      fail(dir, option + ": another lorank run is writing to this folder",
           "a folder no running lorank uses",
           err == EWOULDBLOCK ? "locked by a running process" : strerror(err),
           "wait for that run to end (or stop it), or choose another " + option);
    }
  } catch (...) {  // no destructor runs: what it would undo is undone here
    if (made_) remove_made_folder_now(dir);
    throw;
  }
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);
  if (made_) remove_made_folder_now(dir_);
}

}  // namespace lorank
