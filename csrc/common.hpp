// Shared pieces of the engine: error types, the progress/cancel handle, and small file helpers.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace wideann {

// Bad input data or an I/O failure. The message is one line that names the file and, for data
// errors, the 1-based line and column: "data.csv, line 5, column 3: expected a number, found 'x'".
struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The job was cancelled through its Progress handle (Ctrl-C in Python).
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("cancelled") {}
};

// A data error found by a worker, before its line number is known. Workers only know the byte offset
// of the line in its file; the line number is counted once, after the pipeline has stopped.
struct RowError {
  size_t file_index = 0;
  uint64_t line_offset = 0;  // byte offset of the start of the offending line in its file
  size_t column = 0;         // 1-based field index
  std::string message;       // "expected a number, found 'x'"
};

struct RowErrorException : std::exception {
  RowError err;
  explicit RowErrorException(RowError e) : err(std::move(e)) {}
  const char* what() const noexcept override { return err.message.c_str(); }
};

// Progress and cancellation, shared between the job (any thread) and the caller.
struct Progress {
  std::atomic<uint64_t> total{0};
  std::atomic<uint64_t> done{0};
  std::atomic<bool> cancelled{false};
  void check() const {
    if (cancelled.load(std::memory_order_relaxed)) throw Cancelled();
  }
};

// A column's min-max transform: lo = min, range = max - min, and 1 as the returned factor; or, when
// max - min overflows a double (say -1e308 .. 1e308), all in halves with 0.5 as the factor. Halving is
// exact, so normalize's (v * factor - lo) / range and denormalize's (x * range + lo) / factor give the
// same result as with unlimited range.
inline double column_scale(double min, double max, double& lo, double& range) {
  lo = min;
  range = max - min;
  if (std::isfinite(range)) return 1.0;
  lo = 0.5 * min;
  range = 0.5 * max - 0.5 * min;
  return 0.5;
}

// A short, printable excerpt of input text for error messages, in single quotes: valid UTF-8 is kept,
// a tab shows as \t and every other control byte or byte that is not UTF-8 as \xNN, so that a message
// is always one line of valid UTF-8 (Python gets it intact). Cut, at a character boundary, after
// about max_len bytes of input ("..." marks the cut).
std::string excerpt(const char* begin, const char* end, size_t max_len = 40);
inline std::string excerpt(const std::string& s, size_t max_len = 40) {
  return excerpt(s.data(), s.data() + s.size(), max_len);
}

// The length of the valid UTF-8 character at p (1 to 4 bytes; overlong forms, surrogates and values
// beyond U+10FFFF are not valid), or 0 if the bytes at p do not start one.
size_t utf8_char_length(const unsigned char* p, const unsigned char* end);
bool is_valid_utf8(const std::string& s);

std::string errno_message(const std::string& path, const std::string& what);

// A thread that could not be started (std::thread throws std::system_error, e.g. EAGAIN at a limit on
// threads or memory), as one line for the user: "cannot start N threads: <reason>; <hint>". Whoever
// starts threads catches that, stops and joins the ones already started, and throws this instead (a
// std::thread still joinable when its vector is destroyed would end the process in std::terminate).
DataError cannot_start_threads(size_t wanted, const std::system_error& e, const char* hint = "use fewer --threads");

// Reads up to n bytes at `offset` (fewer only at end of file); throws DataError naming the path.
size_t pread_fully(int fd, char* buf, size_t n, uint64_t offset, const std::string& path);

// Which file, in which state: a file replaced, rewritten or appended to has another identity (the
// modification time is exact to the file system's clock tick).
struct FileIdentity {
  uint64_t device = 0, inode = 0, size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileIdentity& o) const {
    return device == o.device && inode == o.inode && size == o.size && mtime_ns == o.mtime_ns;
  }
  bool operator!=(const FileIdentity& o) const { return !(*this == o); }
};

// How `now` differs from `then` in words, for messages: "12345 bytes <when>, 12400 now", "replaced by
// another file" or "modified, same size".
std::string identity_change(const FileIdentity& then, const FileIdentity& now, const std::string& when);

// A read-only file descriptor that closes itself.
class InputFile {
 public:
  explicit InputFile(const std::string& path);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  int fd() const { return fd_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  const FileIdentity& identity() const { return identity_; }  // when opened
  FileIdentity identity_now() const;                          // fstat now

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  FileIdentity identity_;
};

// "path, line N, column C: message" for a RowError found in `f`, the file as the reader opened it: counts
// the newlines before the offending line through its descriptor (a file replaced since, by a rename, is
// still the one read). A file changed in place since it was read (`read_as`, by default its identity when
// opened, is not its identity after the count: a line there may have moved) gets no line number, which
// could be wrong, but says so: "path, column C: message (the file changed while it was being read, so its
// line is unknown)". A file that cannot be read again gets none either: "(its line is unknown: the file could not
// be read again to count it)".
DataError describe(const RowError& e, const InputFile& f);
DataError describe(const RowError& e, const InputFile& f, const FileIdentity& read_as);

// Block size for streaming: the bytes of input a worker takes at a time. 4 MiB, less with many threads
// so that all blocks in flight stay within about 24 MiB of input (peak memory must not grow with the
// core count). WIDEANN_BLOCK_SIZE overrides it (tests use tiny blocks to exercise block boundaries);
// never below 64 bytes.
size_t block_size(size_t threads = 1);

}  // namespace wideann
