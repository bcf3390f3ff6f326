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

DataError cannot_start_threads(size_t wanted, const std::system_error& e, const char* hint) {
  return DataError("cannot start " + std::to_string(wanted) + (wanted == 1 ? " thread: " : " threads: ") +
                   e.code().message() + "; " + hint);
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

namespace {

FileIdentity identity_of(const struct stat& st) {
  return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), static_cast<uint64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

}  // namespace

std::string identity_change(const FileIdentity& then, const FileIdentity& now, const std::string& when) {
  if (then.device != now.device || then.inode != now.inode) return "replaced by another file";
  if (then.size != now.size)
    return std::to_string(then.size) + " bytes " + when + ", " + std::to_string(now.size) + " now";
  return "modified, same size";
}

InputFile::InputFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    if (errno == ENOENT) throw DataError(path + ": no such file");
    throw DataError(errno_message(path, "cannot open"));
  }
  struct stat st;
  if (::fstat(fd_, &st) != 0) {  // (a throwing constructor runs no destructor: close here)
    const std::string message = errno_message(path, "cannot stat");
    ::close(fd_);
    fd_ = -1;
    throw DataError(message);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw DataError(path + ": is a folder, expected a file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
  identity_ = identity_of(st);
#ifdef POSIX_FADV_SEQUENTIAL
  ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

FileIdentity InputFile::identity_now() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) throw DataError(errno_message(path_, "cannot stat"));
  return identity_of(st);
}

size_t utf8_char_length(const unsigned char* p, const unsigned char* end) {
  const size_t left = static_cast<size_t>(end - p);
  if (left == 0) return 0;
  const unsigned c = p[0];
  if (c < 0x80) return 1;
  size_t n;
  unsigned lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c == 0xE0) n = 3, lo = 0xA0;                  // no overlong 3-byte forms
  else if (c == 0xED) n = 3, hi = 0x9F;                  // no UTF-16 surrogates
  else if (c >= 0xE1 && c <= 0xEF) n = 3;
  else if (c == 0xF0) n = 4, lo = 0x90;                  // no overlong 4-byte forms
  else if (c == 0xF4) n = 4, hi = 0x8F;                  // nothing beyond U+10FFFF
  else if (c >= 0xF1 && c <= 0xF3) n = 4;
  else return 0;
  if (left < n || p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < n; ++i)
    if (p[i] < 0x80 || p[i] > 0xBF) return 0;
  return n;
}

bool is_valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    size_t n = utf8_char_length(p, end);
    if (n == 0) return false;
    p += n;
  }
  return true;
}

std::string excerpt(const char* begin, const char* end, size_t max_len) {
  static const char kHex[] = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(begin);
  const auto* e = reinterpret_cast<const unsigned char*>(end);
  const auto* stop = p + std::min<size_t>(max_len, static_cast<size_t>(e - p));
  std::string s = "'";
  while (p < stop) {
    size_t n = utf8_char_length(p, e);
    if (n > 1 && p + n > stop) break;  // do not cut a character in two
    if (*p == '\t') {
      s += "\\t";
    } else if (n == 0 || *p < 0x20 || *p == 0x7f) {
      s += "\\x";
      s += kHex[*p >> 4];
      s += kHex[*p & 15];
      n = 1;
    } else if (n == 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) {
      s += "\\ufeff";  // a byte order mark where it does not belong: invisible, so named
    } else if (n == 2 && p[0] == 0xC2 && p[1] == 0xA0) {
      s += "\\u00a0";  // a no-break space (spreadsheets write them): looks like a space, is not one
    } else if ((n == 2 && p[0] == 0xC2 && p[1] < 0xA0) ||
               (n == 3 && p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9))) {
      // C1 controls (U+0085 is a line break to many tools) and U+2028/U+2029, the line and paragraph
      // separators: valid UTF-8, but they would break the one-line message
      const unsigned cp = n == 2 ? p[1] : 0x2000u | (p[2] & 0x3Fu) | ((p[1] & 0x3Fu) << 6);
      s += "\\u";
      for (int shift = 12; shift >= 0; shift -= 4) s += kHex[(cp >> shift) & 15];
    } else {
      s.append(reinterpret_cast<const char*>(p), n);
    }
    p += n;
  }
  if (p < e) s += "...";
  return s + "'";
}

DataError describe(const RowError& e, const InputFile& f) { return describe(e, f, f.identity()); }

DataError describe(const RowError& e, const InputFile& f, const FileIdentity& read_as) {
  const std::string& path = f.path();
  uint64_t line = 1;
  bool known = false;
  const char* why = " (the file changed while it was being read, so its line is unknown)";
  try {
    std::vector<char> buf(1 << 20);
    uint64_t pos = 0;
    while (pos < e.line_offset) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), e.line_offset - pos));
      size_t got = pread_fully(f.fd(), buf.data(), want, pos, path);
      if (got == 0) break;
      for (size_t i = 0; i < got; ++i) line += (buf[i] == '\n');
      pos += got;
    }
    known = pos == e.line_offset && f.identity_now() == read_as;  // (after the count: a change during it too)
  } catch (const DataError&) {
    // (a read or stat that fails: no line; the message still names the file, and does not blame a change)
    why = " (its line is unknown: the file could not be read again to count it)";
  }
  std::string where = path;
  if (known) where += ", line " + std::to_string(line);
  if (e.column > 0) where += ", column " + std::to_string(e.column);
  return DataError(where + ": " + e.message + (known ? "" : why));
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
