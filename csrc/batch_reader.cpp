// The native batch reader: the rows of a batch from a .npy table (one file or several shards) straight
// into the caller's buffers, with several threads and without Python.
//
// A batch is a sorted list of global row numbers (or several, read in one call). It is cut into tasks: runs of consecutive rows within
// one shard, of at most about kTaskBytes (so that a long run, say an evaluation batch, is still spread
// over the threads) and at most kMaxIov / 2 rows (a preadv takes at most IOV_MAX pieces; each row is two:
// its inputs go to x, its target to y, so no second copy splits them). The pool's threads and the
// calling thread take tasks from a shared counter until none is left. One preadv per task reads a whole
// run of rows; a short read means the file was truncated under us.
//
// A float16 table can be delivered as float32 (on a CPU, which multiplies float32 far faster): each task
// then reads its run into a small buffer of its thread and converts it into x and y, with F16C where the
// CPU has it (exact: every float16 is a float32), so the conversion is spread over the reading threads.
//
// After the reads, every shard the batch touched is checked with fstat against the size and modification
// time it had when its header was read: a file written in place while training is an error, not a batch
// mixing old and new rows. (A file replaced by rename is a new file; the descriptor keeps reading the old
// one, consistently.)
#include <sys/stat.h>
#include <sys/uio.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "engine.hpp"
#include "half.hpp"  // half_bits_to_float

namespace wideann {
namespace {

#ifdef IOV_MAX
constexpr size_t kMaxIov = IOV_MAX;
#else
constexpr size_t kMaxIov = 1024;
#endif
constexpr uint64_t kTaskBytes = 1 << 20;

int64_t mtime_of(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

struct Shard {
  int fd = -1;
  std::string path;
  uint64_t offset = 0, n_rows = 0, start = 0, size = 0;  // start: global number of its row 0
  int64_t mtime = 0;
};

struct Task {
  size_t shard;
  uint64_t local_row, count, out_row;
};

// A fixed set of threads that run one job at a time, together with the calling thread.
class Pool {
 public:
  // A thread that cannot be started stops and joins the ones that were (see cannot_start_threads).
  explicit Pool(size_t workers) {
    try {
      workers_.reserve(workers);
      for (size_t i = 0; i < workers; ++i) workers_.emplace_back([this] { loop(); });
    } catch (const std::system_error& e) {
      stop();
      throw cannot_start_threads(workers + 1, e, "use fewer reader threads");  // (+1: the caller's)
    } catch (...) {
      stop();
      throw;
    }
  }
  ~Pool() { stop(); }
  size_t size() const { return workers_.size(); }

  // Runs `job` on the calling thread and on `helpers` pool threads; returns when all have returned.
  // `job` must not throw.
  void run(const std::function<void()>& job, size_t helpers) {
    helpers = std::min(helpers, workers_.size());
    if (helpers > 0) {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &job;
      tickets_ = pending_ = helpers;
    }
    wake_.notify_all();
    job();
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, [&] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      wake_.wait(lk, [&] { return stop_ || tickets_ > 0; });
      if (stop_) return;
      --tickets_;
      const std::function<void()>* job = job_;
      lk.unlock();
      (*job)();
      lk.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable wake_, done_;
  const std::function<void()>* job_ = nullptr;
  size_t tickets_ = 0, pending_ = 0;
  bool stop_ = false;
};

// A float16 row into float32 (the table's 2-byte values; `in` comes from a std::vector<char>, 2-aligned).
void halves_to_floats(const char* in, char* out, size_t n) {
  half_bits_to_float(reinterpret_cast<const uint16_t*>(in), reinterpret_cast<float*>(out), n);
}

// Reads `n` bytes at `offset` into buf; a short read is the file truncated under the reader.
void pread_all(const Shard& sh, char* buf, uint64_t n, uint64_t offset) {
  if (pread_fully(sh.fd, buf, n, offset, sh.path) != n)
    throw DataError(sh.path + ": unexpected end of file near byte " + std::to_string(offset + n) + " (" +
                    std::to_string(sh.size) + " bytes when its header was read: truncated while being read?)");
}

// Reads the task's float16 rows into `scratch`, then converts them: inputs into x, targets into y (float32).
void read_task_to_float32(const Shard& sh, const Task& t, char* x, char* y, size_t n_inputs,
                          std::vector<char>& scratch) {
  const size_t row_bytes = (n_inputs + 1) * 2;
  scratch.resize(t.count * row_bytes);
  pread_all(sh, scratch.data(), t.count * row_bytes, sh.offset + t.local_row * row_bytes);
  for (uint64_t i = 0; i < t.count; ++i) {
    const char* row = scratch.data() + i * row_bytes;
    halves_to_floats(row, x + (t.out_row + i) * n_inputs * 4, n_inputs);
    halves_to_floats(row + n_inputs * 2, y + (t.out_row + i) * 4, 1);
  }
}

// Reads the task's rows with preadv: each row's inputs into x, its target into y.
void read_task(const Shard& sh, const Task& t, char* x, char* y, size_t x_row, size_t item,
               std::vector<iovec>& iov) {
  const size_t row_bytes = x_row + item;
  iov.clear();
  for (uint64_t i = 0; i < t.count; ++i) {
    if (x_row) iov.push_back({x + (t.out_row + i) * x_row, x_row});
    iov.push_back({y + (t.out_row + i) * item, item});
  }
  const uint64_t offset = sh.offset + t.local_row * row_bytes;
  const uint64_t want = t.count * row_bytes;
  uint64_t got = 0;
  size_t first = 0;
  while (got < want) {
    const int pieces = static_cast<int>(std::min(iov.size() - first, kMaxIov));
    ssize_t r = ::preadv(sh.fd, iov.data() + first, pieces, static_cast<off_t>(offset + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw DataError(errno_message(sh.path, "read failed"));
    }
    if (r == 0)
      throw DataError(sh.path + ": unexpected end of file at byte " + std::to_string(offset + got) + " (" +
                      std::to_string(sh.size) + " bytes when its header was read: truncated while being read?)");
    got += static_cast<uint64_t>(r);
    size_t left = static_cast<size_t>(r);
    while (left > 0) {  // skip the pieces filled, shorten a piece filled in part
      if (left >= iov[first].iov_len) {
        left -= iov[first].iov_len;
        ++first;
      } else {
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
        iov[first].iov_len -= left;
        left = 0;
      }
    }
  }
}

}  // namespace

struct BatchReader::Impl {
  std::vector<Shard> shards;
  std::vector<uint64_t> starts;  // starts[k] = global row of shard k's row 0; starts.back() = all rows
  size_t n_columns = 0, item = 0, x_row = 0, rows_per_task = 1, threads = 1;
  std::unique_ptr<Pool> pool;
  std::mutex call;  // one batch at a time
  std::vector<Task> tasks;
};

BatchReader::BatchReader(const std::vector<NpyShardSpec>& specs, size_t n_columns, size_t item_size,
                         size_t threads)
    : impl_(std::make_unique<Impl>()) {
  Impl& im = *impl_;
  if (n_columns < 1) throw std::invalid_argument("a table needs at least one column");
  if (item_size != 2 && item_size != 4 && item_size != 8) throw std::invalid_argument("item size must be 2, 4 or 8");
  im.n_columns = n_columns;
  im.item = item_size;
  im.x_row = (n_columns - 1) * item_size;
  const uint64_t row_bytes = n_columns * item_size;
  im.rows_per_task = static_cast<size_t>(
      std::max<uint64_t>(1, std::min<uint64_t>(kMaxIov / 2, kTaskBytes / row_bytes)));
  im.threads = std::max<size_t>(1, threads);
  uint64_t start = 0;
  im.starts.push_back(0);
  try {
    for (const auto& s : specs) {
      Shard sh;
      sh.path = s.path;
      sh.fd = ::fcntl(s.fd, F_DUPFD_CLOEXEC, 0);
      if (sh.fd < 0) throw DataError(errno_message(s.path, "cannot use the open file"));
      im.shards.push_back(sh);  // closed by the destructor from here on
      struct stat st;
      if (::fstat(sh.fd, &st) != 0) throw DataError(errno_message(s.path, "cannot stat"));
      if (static_cast<uint64_t>(st.st_size) != s.size || mtime_of(st) != s.mtime_ns)
        throw DataError(s.path + ": the file changed after its header was read");
      if (s.data_offset + s.n_rows * row_bytes > s.size)
        throw DataError(s.path + ": file is truncated (" + std::to_string(s.size) + " bytes, the header promises " +
                        std::to_string(s.data_offset + s.n_rows * row_bytes) + ")");
      Shard& back = im.shards.back();
      back.offset = s.data_offset;
      back.n_rows = s.n_rows;
      back.start = start;
      back.size = s.size;
      back.mtime = s.mtime_ns;
      start += s.n_rows;
      im.starts.push_back(start);
    }
    im.pool = std::make_unique<Pool>(im.threads - 1);  // (in the try: a pool that fails closes the files too)
  } catch (...) {
    for (auto& sh : im.shards) ::close(sh.fd);
    throw;
  }
}

BatchReader::~BatchReader() {
  impl_->pool.reset();
  for (auto& sh : impl_->shards) ::close(sh.fd);
}

uint64_t BatchReader::n_rows() const { return impl_->starts.back(); }
size_t BatchReader::n_columns() const { return impl_->n_columns; }
size_t BatchReader::item_size() const { return impl_->item; }
size_t BatchReader::threads() const { return impl_->threads; }

void BatchReader::check(const int64_t* rows, size_t n, bool to_float32, const std::vector<size_t>& batches) const {
  if (to_float32 && impl_->item != 2) throw std::invalid_argument("only a float16 table is converted to float32");
  size_t sum = 0;
  for (size_t b : batches) {
    if (b > n - sum) throw std::invalid_argument("the batches' sizes add up to more than the " + std::to_string(n) + " rows given");
    sum += b;  // (never past n: no wrap-around)
  }
  if (!batches.empty() && sum != n)
    throw std::invalid_argument("the batches' sizes add up to " + std::to_string(sum) + ", not the " +
                                std::to_string(n) + " rows given");
  const uint64_t total = impl_->starts.back();
  size_t start = 0, end = batches.empty() ? n : 0, k = 0;  // the batch that row i is in: [start, end)
  for (size_t i = 0; i < n; ++i) {
    while (i >= end) {  // row i begins the next batch (past any empty ones; the sizes add up to n)
      start = end;
      end += batches[k++];
    }
    if (rows[i] < 0 || static_cast<uint64_t>(rows[i]) >= total)
      throw std::out_of_range("row " + std::to_string(rows[i]) + " out of range for a table of " +
                              std::to_string(total) + " rows");
    if (i > start && rows[i] <= rows[i - 1])
      throw std::invalid_argument(batches.empty() ? "row numbers must be strictly increasing"
                                                  : "row numbers must be strictly increasing within each batch");
  }
}

void BatchReader::read(const int64_t* rows, size_t n, char* x, char* y, bool to_float32,
                       const std::vector<size_t>& batches) {
  Impl& im = *impl_;
  check(rows, n, to_float32, batches);
  std::lock_guard<std::mutex> call(im.call);
  // the tasks: runs of consecutive rows within one shard, at most rows_per_task rows each
  im.tasks.clear();
  std::vector<size_t> touched;                       // in the order first read
  std::vector<char> seen(im.shards.size(), 0);  // (the rows of several batches may go back to a shard)
  for (size_t i = 0; i < n;) {
    const int64_t r = rows[i];
    const size_t k = static_cast<size_t>(
        std::upper_bound(im.starts.begin(), im.starts.end(), static_cast<uint64_t>(r)) - im.starts.begin() - 1);
    const Shard& sh = im.shards[k];
    const uint64_t end = sh.start + sh.n_rows;
    size_t j = i + 1;
    while (j < n && rows[j] == rows[j - 1] + 1 && static_cast<uint64_t>(rows[j]) < end && j - i < im.rows_per_task) ++j;
    im.tasks.push_back({k, static_cast<uint64_t>(r) - sh.start, j - i, i});
    if (!seen[k]) {
      seen[k] = 1;
      touched.push_back(k);
    }
    i = j;
  }
  if (im.tasks.empty()) return;

  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_m;
  const std::function<void()> job = [&] {  // (must not throw: on a pool thread that is std::terminate)
    try {
      std::vector<iovec> iov;
      std::vector<char> scratch;
      iov.reserve(2 * im.rows_per_task);
      for (;;) {
        const size_t t = next.fetch_add(1, std::memory_order_relaxed);
        if (t >= im.tasks.size() || failed.load(std::memory_order_relaxed)) return;
        const Task& task = im.tasks[t];
        if (to_float32)
          read_task_to_float32(im.shards[task.shard], task, x, y, im.n_columns - 1, scratch);
        else
          read_task(im.shards[task.shard], task, x, y, im.x_row, im.item, iov);
      }
    } catch (...) {  // (a read, or memory for the buffers above)
      std::lock_guard<std::mutex> lk(error_m);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  im.pool->run(job, std::min(im.tasks.size(), im.threads) - 1);
  if (error) std::rethrow_exception(error);

  // a file written in place under the reader: its size or modification time moved
  for (size_t k : touched) {
    const Shard& sh = im.shards[k];
    struct stat st;
    if (::fstat(sh.fd, &st) != 0) throw DataError(errno_message(sh.path, "cannot stat"));
    if (static_cast<uint64_t>(st.st_size) != sh.size || mtime_of(st) != sh.mtime)
      throw DataError(sh.path + ": the file changed while it was being read (its size or modification time is not "
                      "what it was when its header was read); the batch is not used");
  }
}

}  // namespace wideann
