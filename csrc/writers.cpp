#include "writers.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

#include "common.hpp"

namespace wideann {

// ---- OutputFile ----------------------------------------------------------------------------------

namespace {

mode_t default_file_mode() {
  // mkstemp creates 0600; give the finished file the mode a plain open() would (0666 minus umask).
  static const mode_t mode = [] {
    mode_t mask = ::umask(0);
    ::umask(mask);
    return static_cast<mode_t>(0666 & ~mask);
  }();
  return mode;
}

}  // namespace

OutputFile::OutputFile(const std::string& path) : path_(path) {
  std::string dir = ".", base = path;
  size_t slash = path.rfind('/');
  if (slash != std::string::npos) {
    dir = slash == 0 ? "/" : path.substr(0, slash);
    base = path.substr(slash + 1);
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw DataError(path + ": output folder " + dir + " does not exist");
  tmp_ = (dir == "/" ? "" : dir) + "/." + base + ".XXXXXX.tmp";
  std::vector<char> name(tmp_.begin(), tmp_.end());
  name.push_back('\0');
  fd_ = ::mkstemps(name.data(), 4);
  if (fd_ < 0) throw DataError(errno_message(path, "cannot create output"));
  tmp_.assign(name.data());
  ::fchmod(fd_, default_file_mode());
}

OutputFile::~OutputFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void OutputFile::write(const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd_, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw DataError(errno_message(path_, "write failed"));
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
}

void OutputFile::write_at(uint64_t offset, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd_, data, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw DataError(errno_message(path_, "write failed"));
    }
    data += w;
    offset += static_cast<uint64_t>(w);
    n -= static_cast<size_t>(w);
  }
}

void OutputFile::commit() {
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw DataError(errno_message(path_, "write failed"));  // e.g. a full disk on NFS
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) throw DataError(errno_message(path_, "cannot rename output into place"));
  committed_ = true;
}

// ---- .npy ----------------------------------------------------------------------------------------

std::string npy_header(const std::string& descr, uint64_t rows, size_t cols) {
  // Room for the largest row count, so that the header never changes length when patched.
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" +
                     std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  const size_t fixed = 10;  // magic (6) + version (2) + header length (2)
  const size_t max_dict = dict.size() - std::to_string(rows).size() + 20;
  size_t total = fixed + max_dict + 1;  // + '\n'
  total = (total + 63) / 64 * 64;       // data starts 64-byte aligned
  dict.append(total - fixed - 1 - dict.size(), ' ');
  dict += '\n';
  std::string h = "\x93NUMPY";
  h += '\x01';
  h += '\x00';
  uint16_t len = static_cast<uint16_t>(dict.size());
  h += static_cast<char>(len & 0xff);
  h += static_cast<char>(len >> 8);
  return h + dict;
}

NpyInfo read_npy_header(int fd, const std::string& path) {
  char pre[12];
  if (pread_fully(fd, pre, 10, 0, path) != 10 || std::memcmp(pre, "\x93NUMPY", 6) != 0)
    throw DataError(path + ": not a .npy file");
  int major = static_cast<unsigned char>(pre[6]);
  size_t hlen, start;
  if (major == 1) {
    hlen = static_cast<unsigned char>(pre[8]) | (static_cast<size_t>(static_cast<unsigned char>(pre[9])) << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (pread_fully(fd, pre, 12, 0, path) != 12) throw DataError(path + ": truncated .npy header");
    hlen = 0;
    for (int i = 0; i < 4; ++i) hlen |= static_cast<size_t>(static_cast<unsigned char>(pre[8 + i])) << (8 * i);
    start = 12;
  } else {
    throw DataError(path + ": unsupported .npy version " + std::to_string(major));
  }
  if (hlen > (1u << 24)) throw DataError(path + ": corrupt .npy header");
  std::string dict(hlen, '\0');
  if (pread_fully(fd, dict.data(), hlen, start, path) != hlen) throw DataError(path + ": truncated .npy header");

  NpyInfo info;
  info.data_offset = start + hlen;
  auto value_of = [&](const std::string& key) -> std::string {
    size_t k = dict.find("'" + key + "'");
    if (k == std::string::npos) throw DataError(path + ": .npy header has no '" + key + "'");
    size_t colon = dict.find(':', k);
    size_t a = dict.find_first_not_of(' ', colon + 1);
    return dict.substr(a);
  };
  std::string d = value_of("descr");
  if (d.rfind("'<f4'", 0) == 0 || d.rfind("'=f4'", 0) == 0) info.descr = "<f4", info.item_size = 4;
  else if (d.rfind("'<f2'", 0) == 0 || d.rfind("'=f2'", 0) == 0) info.descr = "<f2", info.item_size = 2;
  else if (d.rfind("'<f8'", 0) == 0 || d.rfind("'=f8'", 0) == 0) info.descr = "<f8", info.item_size = 8;
  else throw DataError(path + ": .npy dtype " + d.substr(0, d.find(',')) + " is not supported (float16, float32 or float64)");
  if (value_of("fortran_order").rfind("False", 0) != 0) throw DataError(path + ": Fortran-order .npy is not supported");
  std::string shape = value_of("shape");
  size_t close = shape.find(')');
  std::vector<uint64_t> dims;
  for (size_t i = 1; i < close;) {
    size_t j = shape.find_first_of(",)", i);
    std::string t = shape.substr(i, j - i);
    size_t a = t.find_first_not_of(' ');
    if (a != std::string::npos) dims.push_back(std::stoull(t.substr(a)));
    i = j + 1;
  }
  if (dims.size() == 1) info.rows = dims[0], info.cols = 1;
  else if (dims.size() == 2) info.rows = dims[0], info.cols = static_cast<size_t>(dims[1]);
  else throw DataError(path + ": expected a 1-D or 2-D .npy array");
  return info;
}

// ---- numbers -------------------------------------------------------------------------------------

uint16_t to_half_bits(double x) {
#if defined(__FLT16_MAX__)
  _Float16 h = static_cast<_Float16>(x);  // one correctly rounded conversion
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
#else
  float f = static_cast<float>(x);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  uint32_t abs = u & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0);
  if (abs >= 0x477ff000) return sign | 0x7c00;  // overflow to inf
  if (abs < 0x38800000) {                        // subnormal half
    uint32_t m = (abs & 0x7fffff) | 0x800000;
    int shift = 113 - static_cast<int>(abs >> 23);
    if (shift > 24) return sign;
    uint32_t half = m >> (shift + 13);
    uint32_t rem = m & ((1u << (shift + 13)) - 1), mid = 1u << (shift + 12);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t h = ((abs - 0x38000000) >> 13);
  uint32_t rem = abs & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return static_cast<uint16_t>(sign | h);
#endif
}

float half_bits_to_float(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  float f;
  if (exp == 0) {
    f = std::ldexp(static_cast<float>(man), -24);
    return sign ? -f : f;
  }
  uint32_t u = exp == 31 ? (sign | 0x7f800000 | (man << 13)) : (sign | ((exp + 112) << 23) | (man << 13));
  std::memcpy(&f, &u, 4);
  return f;
}

std::string csv_header(const std::vector<std::string>& names, char delim) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out += delim;
    const std::string& n = names[i];
    if (n.find_first_of(std::string("\"\r\n") + delim) != std::string::npos) {
      out += '"';
      for (char c : n) {
        if (c == '"') out += '"';
        out += c;
      }
      out += '"';
    } else {
      out += n;
    }
  }
  out += '\n';
  return out;
}

}  // namespace wideann
