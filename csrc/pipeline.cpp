#include "pipeline.hpp"

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <limits>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace wideann {

void run_pipeline(size_t n_threads, Progress& progress, const PipelineSteps& steps) {
  if (n_threads == 0) n_threads = 1;
  constexpr uint64_t kNone = std::numeric_limits<uint64_t>::max();
  std::mutex m;
  std::condition_variable cv;
  uint64_t next_seq = 0;     // the sequence number the next produced block gets
  uint64_t next_commit = 0;  // the block whose turn it is to commit
  bool exhausted = false;
  uint64_t fail_seq = kNone;  // the earliest block that failed
  std::exception_ptr failure;

  auto fail = [&](uint64_t seq, std::exception_ptr e) {  // call with the lock held
    if (seq < fail_seq) {
      fail_seq = seq;
      failure = std::move(e);
    }
    cv.notify_all();
  };

  auto worker = [&](size_t w) {
    for (;;) {
      uint64_t seq;
      {
        std::lock_guard<std::mutex> lk(m);
        if (exhausted || next_seq >= fail_seq) return;
        seq = next_seq;
        try {
          progress.check();
          if (!steps.produce(w)) {
            exhausted = true;
            return;
          }
        } catch (...) {
          fail(seq, std::current_exception());
          return;
        }
        ++next_seq;
      }
      try {
        steps.work(w);
      } catch (...) {
        std::lock_guard<std::mutex> lk(m);
        fail(seq, std::current_exception());
        // Fall through: earlier blocks still commit; this one gives up its turn below.
      }
      {
        std::unique_lock<std::mutex> lk(m);
        cv.wait(lk, [&] { return next_commit == seq || fail_seq <= seq; });
        if (fail_seq <= seq) {
          // A block at or before this one failed: nothing after it may be committed. Let later
          // blocks see that, and stop.
          if (next_commit == seq) {
            ++next_commit;
            cv.notify_all();
          }
          return;
        }
      }
      try {
        steps.commit(w);
      } catch (...) {
        std::lock_guard<std::mutex> lk(m);
        fail(seq, std::current_exception());
      }
      {
        std::lock_guard<std::mutex> lk(m);
        ++next_commit;
        cv.notify_all();
      }
    }
  };

  if (n_threads == 1) {
    worker(0);
  } else {
    std::vector<std::thread> threads;
    threads.reserve(n_threads);
    {
      // The workers start under the lock, so none produces a block before all have started. One that
      // cannot be started (a limit on threads or memory) fails the run before any block, and the ones
      // started see that, return and are joined: never std::terminate for a joinable std::thread.
      std::unique_lock<std::mutex> lk(m);
      try {
        for (size_t w = 0; w < n_threads; ++w) threads.emplace_back(worker, w);
      } catch (...) {
        fail_seq = 0;  // (nothing has run: this is the first failure)
        try {
          throw;
        } catch (const std::system_error& e) {
          failure = std::make_exception_ptr(cannot_start_threads(n_threads, e));
        } catch (...) {
          failure = std::current_exception();
        }
      }
    }
    for (auto& t : threads) t.join();
  }
  if (failure) std::rethrow_exception(failure);
}

}  // namespace wideann
