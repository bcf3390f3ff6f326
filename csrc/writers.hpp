// Output files: written under a temporary name in the destination folder and renamed into place only
// when complete, so a failure, an interrupt or a kill never leaves a partial file at the output path.
// Also the .npy header (written with a placeholder row count, patched at the end), the .npy reader
// header, and number formatting for CSV output.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "half.hpp"  // to_half_bits, half_bits_to_float

namespace wideann {

struct Progress;  // common.hpp

class OutputFile {
 public:
  // Creates ".<name>.XXXXXX.tmp" beside `path`. With `temporary` given, that file (made by the caller,
  // beside `path`) is written instead, and commit() only closes it: the caller renames it to `path`
  // (normalize's caller renames the table and its stats file together). Messages name `path`.
  explicit OutputFile(const std::string& path, const std::string& temporary = "");
  ~OutputFile();  // removes the temporary file unless committed
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write(const char* data, size_t n);
  void write_at(uint64_t offset, const char* data, size_t n);
  // Close, then rename to the final path: under the lock the Python side takes on the folder (flock; see
  // _atomic.folders_locked), the write protection of a file there checked again first. A cancel of `progress`
  // while the lock is waited for throws Cancelled (the temporary is removed by the destructor).
  void commit(const Progress* progress = nullptr);
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_, dir_;
  int fd_ = -1;
  bool committed_ = false;
  bool caller_commits_ = false;
};

// ---- .npy (format version 1.0, C order) ----------------------------------------------------------

// A header for a `rows` x `cols` table of `descr` ('<f4', '<f2'); always the same length for a given
// `cols`, whatever `rows`, so that it can be rewritten in place once the row count is known.
std::string npy_header(const std::string& descr, uint64_t rows, size_t cols);

struct NpyInfo {
  std::string descr;  // '<f4', '<f2' or '<f8'
  size_t item_size = 0;
  uint64_t rows = 0;
  size_t cols = 0;  // 1 for a 1-D array
  uint64_t data_offset = 0;
};
NpyInfo read_npy_header(int fd, const std::string& path);

// ---- numbers -------------------------------------------------------------------------------------

// Appends the shortest text that reads back as the same value.
inline void append_shortest(std::vector<char>& out, size_t& n, float v) {
  if (out.size() < n + 32) out.resize((n + 32) * 2);
  n = static_cast<size_t>(std::to_chars(out.data() + n, out.data() + out.size(), v).ptr - out.data());
}
inline void append_shortest(std::vector<char>& out, size_t& n, double v) {
  if (out.size() < n + 32) out.resize((n + 32) * 2);
  n = static_cast<size_t>(std::to_chars(out.data() + n, out.data() + out.size(), v).ptr - out.data());
}
inline void append_char(std::vector<char>& out, size_t& n, char c) {
  if (out.size() < n + 1) out.resize((n + 1) * 2);
  out[n++] = c;
}

// A CSV header line (names quoted where needed), newline included.
std::string csv_header(const std::vector<std::string>& names, char delim);

}  // namespace wideann
