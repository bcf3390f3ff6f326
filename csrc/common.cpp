#include "common.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace wideann {

std::string errno_message(const std::string& path, const std::string& what) {
  return path + ": " + what + ": " + std::strerror(errno);
}

size_t pread_fully(int fd, char* buf, size_t n, uint64_t offset, const std::string& path) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, buf + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw DataError(errno_message(path, "read failed"));
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

InputFile::InputFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    if (errno == ENOENT) throw DataError(path + ": no such file");
    throw DataError(errno_message(path, "cannot open"));
  }
  struct stat st;
  if (::fstat(fd_, &st) != 0) throw DataError(errno_message(path, "cannot stat"));
  if (S_ISDIR(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw DataError(path + ": is a folder, expected a file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
#ifdef POSIX_FADV_SEQUENTIAL
  ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::string excerpt(const char* begin, const char* end, size_t max_len) {
  std::string s;
  for (const char* p = begin; p < end && s.size() < max_len; ++p) {
    unsigned char c = static_cast<unsigned char>(*p);
    if (c == '\t') s += "\\t";
    else if (c < 0x20 || c == 0x7f) s += '?';
    else s += static_cast<char>(c);
  }
  if (static_cast<size_t>(end - begin) > max_len) s += "...";
  return "'" + s + "'";
}

DataError describe(const RowError& e, const std::vector<std::string>& paths) {
  const std::string& path = paths.at(e.file_index);
  uint64_t line = 1;
  try {
    InputFile f(path);
    std::vector<char> buf(1 << 20);
    uint64_t pos = 0;
    while (pos < e.line_offset) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), e.line_offset - pos));
      size_t got = pread_fully(f.fd(), buf.data(), want, pos, path);
      if (got == 0) break;
      for (size_t i = 0; i < got; ++i) line += (buf[i] == '\n');
      pos += got;
    }
  } catch (const DataError&) {
    // The line number is best effort if the file vanished meanwhile; the message still names it.
  }
  std::string where = path + ", line " + std::to_string(line);
  if (e.column > 0) where += ", column " + std::to_string(e.column);
  return DataError(where + ": " + e.message);
}

size_t block_size(size_t threads) {
  static const size_t forced = [] {
    const char* env = std::getenv("WIDEANN_BLOCK_SIZE");
    long long v = env ? std::atoll(env) : 0;
    return v > 0 ? std::max<size_t>(64, static_cast<size_t>(v)) : size_t(0);
  }();
  if (forced) return forced;
  const size_t budget = size_t(24) << 20, most = size_t(4) << 20, least = size_t(256) << 10;
  return std::min(most, std::max(least, budget / std::max<size_t>(1, threads)));
}

}  // namespace wideann
