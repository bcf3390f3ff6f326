// The engine's jobs, as the bindings (and any C++ caller) see them. Every job streams its input in
// blocks through run_pipeline, so memory is O(columns + threads x block), never O(rows).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "block_reader.hpp"
#include "common.hpp"

namespace wideann {

struct CsvOptions {
  HeaderMode header = HeaderMode::Auto;
  char delimiter = ',';
  size_t threads = 1;
};

// An input as pass 1 read it: the file (its identity when opened, unchanged at its end) and its data rows.
struct InputSeen {
  FileIdentity file;
  uint64_t rows = 0;
};

struct ColumnStats {
  std::vector<std::string> names;
  std::vector<double> min, max;
  uint64_t n_rows = 0;
  std::vector<InputSeen> inputs;  // one per input, in order
};

// Pass 1: per-column min and max, and the row count, over the inputs concatenated.
ColumnStats compute_stats(const std::vector<std::string>& inputs, const CsvOptions& opt, Progress& progress);

enum class OutputFormat { Npy, Csv };
enum class OutputDtype { Float32, Float16 };

struct NormalizeOptions {
  CsvOptions csv;
  OutputFormat format = OutputFormat::Npy;
  OutputDtype dtype = OutputDtype::Float32;
  bool clip = false;
  std::string temporary;  // if set: write this file (the caller's, beside `output`), which the caller
                          // then renames to `output` (see OutputFile)
  // If set (a fit: pass 1's ColumnStats::inputs): every input must be the file pass 1 read, unchanged, and
  // give as many rows; else the stats do not describe it (values beyond [0, 1], rows the stats do not
  // count) and normalize throws a DataError naming it. Empty when applying stats of other data.
  std::vector<InputSeen> expect;
};

// Pass 2: writes (v - min) / (max - min) for every value (0 for a constant column) to `output`,
// atomically. `names` head the CSV output. Returns the number of rows written. An input that changes
// while it is read is refused (see BlockReader::next), as is one that is not as `opt.expect` says.
uint64_t normalize(const std::vector<std::string>& inputs, const std::string& output,
                   const std::vector<double>& min, const std::vector<double>& max,
                   const std::vector<std::string>& names, const NormalizeOptions& opt, Progress& progress);

// Inverse transform of a CSV or .npy table of normalized values into a CSV in original units.
// `columns` gives the stats column of each input column; empty means: a one-column input is the
// target (the last stats column), an input as wide as the stats uses all columns in order.
uint64_t denormalize(const std::string& input, bool input_is_npy, const std::string& output,
                     const std::vector<double>& min, const std::vector<double>& max,
                     const std::vector<std::string>& names, const std::vector<int64_t>& columns,
                     const CsvOptions& opt, Progress& progress);

// Raw example data: Friedman #1 target on the first five inputs plus noise inputs (see make_data.cpp).
void make_data(const std::string& output, uint64_t rows, size_t cols, uint64_t seed, double noise,
               size_t threads, Progress& progress);

// One .npy file of a table: an open descriptor (duplicated; the caller keeps its own), where row 0
// starts, and the size and modification time it had when its header was read.
struct NpyShardSpec {
  int fd = -1;
  std::string path;
  uint64_t data_offset = 0, n_rows = 0, size = 0;
  int64_t mtime_ns = 0;
};

// Batches of rows of a .npy table of one or several shards (global row numbers, shards in order), read
// with `threads` threads (a pool kept between calls), one preadv per run of consecutive rows, straight
// into the caller's buffers: the inputs (all columns but the last) into `x` (n x (columns-1) values),
// the targets into `y` (n values), in the table's dtype, or, for a float16 table with `to_float32`, as
// float32 converted by the reading threads (F16C where the CPU has it). A short read or a file whose size
// or time changed since its header was read is a DataError: never a wrong batch. See batch_reader.cpp.
class BatchReader {
 public:
  BatchReader(const std::vector<NpyShardSpec>& shards, size_t n_columns, size_t item_size, size_t threads);
  ~BatchReader();
  // `rows`: n strictly increasing global row numbers; or, with `batches` (sizes adding up to n), several
  // batches one after the other, the rows strictly increasing within each (a group of steps read in one
  // call). Thread-safe (calls are serialized).
  void read(const int64_t* rows, size_t n, char* x, char* y, bool to_float32 = false,
            const std::vector<size_t>& batches = {});
  // The checks read makes before it reads: rows in range and strictly increasing (within each batch),
  // `batches` adding up to n, to_float32 only for a float16 table (std::out_of_range, std::invalid_argument).
  void check(const int64_t* rows, size_t n, bool to_float32, const std::vector<size_t>& batches = {}) const;
  uint64_t n_rows() const;
  size_t n_columns() const;
  size_t item_size() const;
  size_t threads() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Batches read ahead by a thread of their own with `reader` (which must outlive this): submit queues a
// batch (rows copied; x and y are the caller's, kept alive until its wait or a cancel) and returns its
// ticket; wait(ticket) blocks until that batch is read and rethrows its error; batches are read in the
// order submitted. cancel drops those not started and waits for the one being read (also done on
// destruction). See read_ahead.cpp.
class ReadAhead {
 public:
  explicit ReadAhead(BatchReader& reader);
  ~ReadAhead();
  uint64_t submit(const int64_t* rows, size_t n, char* x, char* y, bool to_float32 = false,
                  const std::vector<size_t>& batches = {});  // (as BatchReader::read)
  void wait(uint64_t ticket);
  void cancel();
  size_t queued() const;  // submitted and not yet waited for

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wideann
