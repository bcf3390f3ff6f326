#include "writers.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <fcntl.h>
#include <random>
#include <stdexcept>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/xattr.h>
#endif

#include "common.hpp"

namespace wideann {

// ---- OutputFile ----------------------------------------------------------------------------------

namespace {

// A POSIX access ACL on the file at `from` (user:1234:rw- beside group::---) copied to `to`. The mode's group
// bits of a file with an ACL are its mask: copying the mode alone would give the owning group the mask's
// rights and take the named users' away. Best effort, as the owner and mode are (none: nothing to copy).
void copy_access_acl(const std::string& from, const std::string& to) {
#ifdef __linux__
  const char* name = "system.posix_acl_access";
  std::string acl(256, '\0');
  ssize_t n = ::lgetxattr(from.c_str(), name, acl.data(), acl.size());
  if (n < 0 && errno == ERANGE) {
    n = ::lgetxattr(from.c_str(), name, nullptr, 0);
    if (n <= 0) return;
    acl.resize(static_cast<size_t>(n));
    n = ::lgetxattr(from.c_str(), name, acl.data(), acl.size());
  }
  if (n > 0) (void)::lsetxattr(to.c_str(), name, acl.data(), static_cast<size_t>(n), 0);
#else
  (void)from;
  (void)to;
#endif
}

// The longest file name the folder takes (NAME_MAX: 255 bytes on the usual file systems).
size_t longest_name(const std::string& dir) {
  long max = ::pathconf(dir.c_str(), _PC_NAME_MAX);
  return max > 0 ? static_cast<size_t>(max) : 255;
}

// `base` cut to at most `keep` bytes, at a UTF-8 character boundary (a cut character would make the
// temporary's name invalid text where the output's is not).
std::string cut_name(const std::string& base, size_t keep) {
  if (base.size() <= keep) return base;
  while (keep > 1 && (static_cast<unsigned char>(base[keep]) & 0xC0) == 0x80) --keep;
  return base.substr(0, keep);
}

// An existing file at `path` that may not be written is refused, as a plain open() refuses it: renamed over,
// its write protection would be lost without a word. On a read-only file system (EROFS: no permission helps,
// and the rename would fail too) the message says that, as the system does.
void refuse_a_write_protected_file(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || ::access(path.c_str(), W_OK) == 0) return;
  if (errno == EROFS) throw DataError(path + ": cannot replace it: it is on a read-only file system");
  throw DataError(path + ": cannot replace it: it is write-protected (make it writable, or remove it)");
}

// An exclusive flock on a folder, held while it lives: the lock _atomic.folders_locked takes for Python's
// commits, so that this rename and theirs into the same folder do not interleave (and a file write-protected
// under their lock is seen so here). Nothing is created; a folder that cannot be opened (mode -wx), or a file
// system without flock, goes unlocked, as on the Python side. The lock is waited for in short steps, the job's
// cancellation checked between them: a blocking flock held a job whose folder another process had locked
// past a Ctrl-C (Python cancels and waits for the job, which never looked), the command hanging until the
// holder let go, then writing its output after all.
class FolderLock {
 public:
  FolderLock(const std::string& dir, const Progress* progress)
      : fd_(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
    if (fd_ < 0) return;
    for (int waited = 0;; ++waited) {
      if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
      if (errno != EWOULDBLOCK && errno != EINTR) return;  // no flock here (ENOLCK, EINVAL...): unlocked
      if (progress != nullptr && progress->cancelled.load()) {
        ::close(fd_);  // (no destructor for an object whose constructor throws)
        fd_ = -1;
        throw Cancelled();
      }
      ::usleep(waited < 100 ? 1000 : 10000);  // a commit holds it for milliseconds: soon, then every 10 ms
    }
  }
  ~FolderLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  int fd_;
};

// What is at `path` when it is not a file (one line naming it, as _atomic.what_is_not_a_file says it at the
// start): a folder, a device, a FIFO, a socket, a stream of this process (/dev/stdout) or a link to one of them.
// Empty when nothing is there, a file, or a link to a file or to nothing: the rename replaces those.
// Python's has one rule more: a link in a folder that lies in /proc (/dev/fd/N, /proc/self/fd/N, whatever their
// target). It is not needed here: this runs only at commit, again, for denormalize and make_data (normalize's
// caller commits), and every way to them (the CLI, wideann.denormalize()/make_data(), the lessons, predict)
// has run Python's check at the start (engine._check_output_folder). A path's folder does not move into /proc
// meanwhile, and those names are numbers, which the output's extension check refuses before that (*.csv).
std::string what_is_not_a_file(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return "";
  const bool link = S_ISLNK(st.st_mode);
  if (link) {
    std::string target(4096, '\0');
    ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
    if (n > 0 && target.compare(0, 6, "/proc/") == 0)
      return path + ": is a stream of this process, not a file: outputs are written under a temporary name and "
                    "renamed over their path; give the path of a file";
    if (::stat(path.c_str(), &st) != 0) return "";  // a link to nothing: replaced
  }
  if (S_ISREG(st.st_mode)) return "";
  const char* kind = S_ISDIR(st.st_mode) ? "a folder"
                     : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                     : S_ISFIFO(st.st_mode)                        ? "a FIFO (named pipe)"
                     : S_ISSOCK(st.st_mode)                        ? "a socket"
                                                                   : "not a regular file";
  return path + ": is " + (link ? "a link to " : "") + kind +
         ", not a file: outputs are written under a temporary name and renamed over their path; give the path "
         "of a file";
}

}  // namespace

OutputFile::OutputFile(const std::string& path, const std::string& temporary)
    : path_(path), caller_commits_(!temporary.empty()) {
  if (caller_commits_) {
    tmp_ = temporary;
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd_ < 0) throw DataError(errno_message(path, "cannot create output"));
    return;
  }
  std::string dir = ".", base = path;
  size_t slash = path.rfind('/');
  if (slash != std::string::npos) {
    dir = slash == 0 ? "/" : path.substr(0, slash);
    base = path.substr(slash + 1);
  }
  dir_ = dir;
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw DataError(path + ": output folder " + dir + " does not exist");
  const size_t longest = longest_name(dir);
  if (base.size() > longest)  // now, not after the work: the final rename would fail
    throw DataError(path + ": file name too long (" + std::to_string(base.size()) + " bytes; this folder takes " +
                    std::to_string(longest) + " at most)");
  refuse_a_write_protected_file(path);
  // ".<base>.XXXXXX.tmp", the base cut so that the name fits the folder (a 250-byte output name is fine).
  // Made with O_EXCL and mode 0666, so that the umask of this moment applies, as to a plain open() (mkstemp
  // makes 0600, and reading the umask means setting it: a moment in which another thread's files get 0666).
  static constexpr size_t kExtra = 1 + 1 + 6 + 4;  // "." base "." XXXXXX ".tmp"
  const size_t keep = longest > kExtra + 1 ? longest - kExtra : 1;
  const std::string prefix = (dir == "/" ? "" : dir) + "/." + cut_name(base, keep) + ".";
  static const char letters[] = "abcdefghijklmnopqrstuvwxyz0123456789_";
  std::random_device random;
  for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
    std::string name = prefix;
    for (int i = 0; i < 6; ++i) name += letters[random() % (sizeof letters - 1)];
    name += ".tmp";
    fd_ = ::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0) tmp_ = name;
    else if (errno != EEXIST) throw DataError(errno_message(path, "cannot create output"));
  }
  if (fd_ < 0) throw DataError(path + ": cannot create output: no free temporary name beside it");
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

void OutputFile::commit(const Progress* progress) {
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw DataError(errno_message(path_, "write failed"));  // e.g. a full disk on NFS
  if (caller_commits_) {
    committed_ = true;
    return;
  }
  // The checks of the start made again, under the folder's lock, right before the rename: a file made
  // write-protected while this ran (or by a Python commit that held the lock) is not renamed over, and a
  // folder, device or FIFO that appeared at the path meanwhile is refused by name (the rename failed with the
  // system's bare "Is a directory", or replaced a device or FIFO that the start would have refused).
  FolderLock lock(dir_, progress);
  const std::string not_a_file = what_is_not_a_file(path_);
  if (!not_a_file.empty()) throw DataError(not_a_file);
  refuse_a_write_protected_file(path_);
  // A file already at the path keeps its mode (and, where allowed, its owner and group), as a plain open() that
  // truncates it would: a private (0600) file rewritten is not made readable by others.
  struct stat st;
  if (::lstat(path_.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    // The owner too where allowed (the superuser), as sed -i does: root rewriting a user's private file must
    // not take it from the user (root:group 0600 would lock its owner out). Else the group alone.
    if (::chown(tmp_.c_str(), st.st_uid, st.st_gid) != 0 &&
        ::chown(tmp_.c_str(), static_cast<uid_t>(-1), st.st_gid) != 0) { /* not a group of ours: the folder's */ }
    (void)::chmod(tmp_.c_str(), st.st_mode & 0777);
    copy_access_acl(path_, tmp_);
  }
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
  auto broken = [&](const std::string& what) { return DataError(path + ": broken .npy header: " + what); };
  auto value_of = [&](const std::string& key) -> std::string {
    size_t k = dict.find("'" + key + "'");
    if (k == std::string::npos) throw DataError(path + ": .npy header has no '" + key + "'");
    size_t colon = dict.find(':', k);
    size_t a = colon == std::string::npos ? colon : dict.find_first_not_of(' ', colon + 1);
    if (a == std::string::npos) throw broken("no value for '" + key + "'");
    return dict.substr(a);
  };
  std::string d = value_of("descr");
  if (d.rfind("'<f4'", 0) == 0 || d.rfind("'=f4'", 0) == 0) info.descr = "<f4", info.item_size = 4;
  else if (d.rfind("'<f2'", 0) == 0 || d.rfind("'=f2'", 0) == 0) info.descr = "<f2", info.item_size = 2;
  else if (d.rfind("'<f8'", 0) == 0 || d.rfind("'=f8'", 0) == 0) info.descr = "<f8", info.item_size = 8;
  else {
    std::string descr = d.substr(0, d.find(','));  // quoted as the header has it; excerpt quotes it again
    if (descr.size() >= 2 && descr.front() == '\'' && descr.back() == '\'') descr = descr.substr(1, descr.size() - 2);
    throw DataError(path + ": .npy dtype " + excerpt(descr) + " is not supported (float16, float32 or float64)");
  }
  if (value_of("fortran_order").rfind("False", 0) != 0) throw DataError(path + ": Fortran-order .npy is not supported");
  // shape: "(rows, cols)" or "(rows,)": whole numbers only, checked for overflow.
  std::string shape = value_of("shape");
  size_t close = shape.find(')');
  if (shape[0] != '(' || close == std::string::npos) throw broken("shape " + excerpt(shape.substr(0, 40)));
  std::vector<uint64_t> dims;
  for (size_t i = 1; i < close;) {
    size_t j = shape.find_first_of(",)", i);
    size_t a = shape.find_first_not_of(' ', i), b = shape.find_last_not_of(' ', j - 1);
    if (a < j) {  // a non-empty entry: digits, at most 2^62
      uint64_t v = 0;
      for (size_t q = a; q <= b; ++q) {
        if (shape[q] < '0' || shape[q] > '9' || v > (uint64_t(1) << 62) / 10)
          throw broken("shape " + excerpt(shape.substr(0, close + 1)));
        v = v * 10 + static_cast<uint64_t>(shape[q] - '0');
      }
      dims.push_back(v);
    } else if (shape[j] == ',') {  // "(,": an empty entry that is not the trailing one of "(n,)"
      throw broken("shape " + excerpt(shape.substr(0, close + 1)));
    }
    i = j + 1;
  }
  if (dims.size() == 1) info.rows = dims[0], info.cols = 1;
  else if (dims.size() == 2) info.rows = dims[0], info.cols = static_cast<size_t>(dims[1]);
  else throw DataError(path + ": expected a 1-D or 2-D .npy array");
  if (info.cols == 0) throw DataError(path + ": the .npy array has no columns");
  if (info.rows > (uint64_t(1) << 62) / info.cols / info.item_size)
    throw broken("shape " + excerpt(shape.substr(0, close + 1)) + " is larger than any file");
  return info;
}

// ---- CSV ---------------------------------------------------------------------------------------

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
