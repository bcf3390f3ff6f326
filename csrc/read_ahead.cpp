// Batches read ahead: a BatchReader driven by a thread of its own, so that the caller (a training loop in
// Python) queues the next batches and goes on with its own work, with no Python thread beside it.
//
// Why not a Python thread: a training step on a GPU is mostly the host launching kernels, and every
// launch passes the GIL around. A reading thread in Python needs the GIL a dozen times a batch (to plan
// it, to call the reader, to hand the batch over), and each time the training thread waits for it. Here
// the caller spends one short call per batch (submit) and one wait that releases the GIL; the reading
// thread never touches Python.
//
// Batches are read one after the other in the order they were submitted, each with all of the reader's
// threads (this thread and the reader's pool). A batch's error (a truncated file, a file changed under
// the reader) is kept and raised by the wait for that batch, never by another one.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "engine.hpp"

namespace wideann {

// How often an idle reading thread looks for new batches while read ones wait to be claimed, and for how
// many looks (10 ms) before it sleeps until woken: a caller that has stopped claiming costs nothing.
constexpr std::chrono::microseconds kPoll{200};
constexpr int kMaxPolls = 50;

struct ReadAhead::Impl {
  using Finished = std::map<uint64_t, std::exception_ptr>;
  struct Batch {
    uint64_t ticket;
    std::vector<int64_t> rows;
    char *x, *y;
    bool to_float32;
    std::vector<size_t> batches;
    // The batch's entry in `finished`, made by submit (on the caller's thread, where running out of memory is
    // the caller's error): the reading thread files the outcome without allocating, so nothing it does after
    // a read can throw (an exception out of loop() is std::terminate, and a waiter would wait forever).
    Finished::node_type outcome;
  };
  explicit Impl(BatchReader& r) : reader(r) {}
  void loop();

  BatchReader& reader;
  mutable std::mutex m;
  std::condition_variable work, done;
  std::deque<Batch> queue;                        // submitted, not started
  Finished finished;  // read (null) or failed, not yet waited for
  uint64_t next_ticket = 0, current = 0;
  bool running = false, stop = false, sleeping = false;  // sleeping: until woken, not looking again
  std::thread thread;  // last: started once the rest is made
};

ReadAhead::ReadAhead(BatchReader& reader) : impl_(std::make_unique<Impl>(reader)) {
  try {
    impl_->thread = std::thread([im = impl_.get()] { im->loop(); });
  } catch (const std::system_error& e) {
    throw cannot_start_threads(1, e, "the process has too many threads, or too little memory");
  }
}

ReadAhead::~ReadAhead() {
  cancel();
  {
    std::lock_guard<std::mutex> lk(impl_->m);
    impl_->stop = true;
  }
  impl_->work.notify_all();
  impl_->thread.join();
}

uint64_t ReadAhead::submit(const int64_t* rows, size_t n, char* x, char* y, bool to_float32,
                          const std::vector<size_t>& batches) {
  Impl& im = *impl_;
  im.reader.check(rows, n, to_float32, batches);  // here: a wrong plan is the caller's error at once, not a later batch's
  Impl::Finished made;  // (the outcome's entry, allocated here: see Batch::outcome)
  made.emplace(0, nullptr);
  Impl::Batch b{0, std::vector<int64_t>(rows, rows + n), x, y, to_float32, batches, made.extract(made.begin())};
  std::lock_guard<std::mutex> lk(im.m);
  const uint64_t ticket = im.next_ticket;
  b.ticket = ticket;
  b.outcome.key() = ticket;
  im.queue.push_back(std::move(b));
  ++im.next_ticket;  // (once queued: a push_back that fails takes no ticket)
  // With batches read and waiting to be claimed, the caller has work for a while: the reading thread finds
  // this batch at its next look (kPoll), and the caller does not pay for waking it (a wake-up of an idle
  // core costs the caller tens of microseconds on a virtual machine: as much as a training step's launches).
  if (im.finished.empty() || im.sleeping) im.work.notify_one();
  return ticket;
}

void ReadAhead::wait(uint64_t ticket) {
  Impl& im = *impl_;
  std::unique_lock<std::mutex> lk(im.m);
  auto known = [&] {
    if (im.finished.count(ticket) || (im.running && im.current == ticket)) return true;
    for (const auto& b : im.queue)
      if (b.ticket == ticket) return true;
    return false;
  };
  if (!known()) throw std::invalid_argument("no batch " + std::to_string(ticket) + " is waiting to be claimed (never submitted, already waited for, or cancelled)");
  im.done.wait(lk, [&] { return im.finished.count(ticket) > 0; });
  std::exception_ptr error = im.finished[ticket];
  im.finished.erase(ticket);
  if (error) std::rethrow_exception(error);
}

void ReadAhead::cancel() {
  Impl& im = *impl_;
  std::unique_lock<std::mutex> lk(im.m);
  im.queue.clear();
  im.done.wait(lk, [&] { return !im.running; });
  im.finished.clear();
}

size_t ReadAhead::queued() const {
  Impl& im = *impl_;
  std::lock_guard<std::mutex> lk(im.m);
  return im.queue.size() + (im.running ? 1 : 0) + im.finished.size();
}

void ReadAhead::Impl::loop() {
  std::unique_lock<std::mutex> lk(m);
  const auto has_work = [&] { return stop || !queue.empty(); };
  int polls = 0;
  for (;;) {
    // idle: while batches wait to be claimed, looks again every kPoll (kMaxPolls times at most); else sleeps
    // until a submit wakes it
    if (finished.empty() || polls >= kMaxPolls) {
      sleeping = true;
      work.wait(lk, has_work);
      sleeping = false;
    } else if (!work.wait_for(lk, kPoll, has_work)) {
      ++polls;
      continue;
    }
    if (stop) return;
    polls = 0;
    Batch b = std::move(queue.front());
    queue.pop_front();
    running = true;
    current = b.ticket;
    lk.unlock();
    std::exception_ptr error;
    try {
      reader.read(b.rows.data(), b.rows.size(), b.x, b.y, b.to_float32, b.batches);
    } catch (...) {
      error = std::current_exception();
    }
    lk.lock();
    running = false;
    b.outcome.mapped() = error;
    finished.insert(std::move(b.outcome));  // (no allocation: the entry was made by submit; tickets are unique)
    done.notify_all();
  }
}

}  // namespace wideann
