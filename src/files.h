// File-system helpers that avoid std::filesystem's directory iteration: PyTorch's pip LibTorch
// exports its own statically linked copies of those symbols (pytorch/pytorch#133437), and with
// them remove_all and directory_iterator crash in a program built by a newer GCC.
#pragma once

#include <csignal>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace lorank {

// Names in `dir` (no "." or ".."), sorted. Throws naming the folder when it cannot be read.
std::vector<std::string> list_dir(const std::string& dir);
// The whole file as bytes. Throws naming the file, with `hint`, when it cannot be read.
std::string read_text_file(const std::string& path, const std::string& hint);
// Removes a file or a folder with everything in it; a missing path is not an error.
void remove_tree(const std::string& path);
// `path` made absolute against the working directory: what configs that are read from anywhere
// (a trainer started elsewhere reads "assets/model" as a Hub id) must hold.
std::string absolute_path(const std::string& path);
// The folder holding the running executable; empty when /proc/self/exe cannot be read.
std::string executable_dir();

// Writes the byte ranges, in order, to `path` through a temp file beside it, fsync and an atomic
// move, so a crash never leaves a half-written file. Refuses an existing file unless `overwrite`.
using ByteRange = std::pair<const uint8_t*, size_t>;
void write_file_atomic(const std::string& path, const std::vector<ByteRange>& chunks,
                       bool overwrite);
void write_file_atomic(const std::string& path, const std::string& bytes, bool overwrite);
// Writes several files all or none: each goes to a temp file first, and they are moved into place
// only when every one was written (a full disk leaves the old set, not half of a new one); a move
// that fails midway puts back the files already moved (where the file system has hard links).
void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files,
                        bool overwrite);

// Checks, before slow work, that its results can be written: `path` is not a folder and its folder
// exists and is writable; `dir` is a writable folder or can be created (its nearest existing
// ancestor is one). `option` names the flag in the error.
void check_can_write_file(const std::string& path, const std::string& option);
void check_can_write_folder(const std::string& dir, const std::string& option);

// Installs `handler` (SA_SIGINFO) for the signals that stop a run, SIGINT, SIGTERM and SIGHUP,
// leaving one ignored when lorank started ignored (nohup's SIGHUP).
void handle_stop_signals(void (*handler)(int, siginfo_t*, void*));

// An exclusive lock on folder `dir` (made when missing) while it lives, so that a second run
// writing to the same --out (a retried job, a second terminal) is refused, not interleaved. The
// kernel drops it when the process dies; a folder it made and left empty is removed again.
class FolderLock {
 public:
  FolderLock(const std::string& dir, const std::string& option);
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  std::string dir_;
  int fd_ = -1;
  bool made_ = false;
};

}  // namespace lorank
