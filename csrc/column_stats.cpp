// Pass 1: per-column min, max and row count. Each worker keeps its own min/max arrays (no sharing in
// the hot loop); they are merged once at the end. Min and max are exact doubles as parsed.
#include <algorithm>
#include <cstring>
#include <limits>

#include "engine.hpp"
#include "pipeline.hpp"
#include "tokenizer.hpp"

namespace wideann {

namespace {

struct StatsWorker {
  Block block;
  std::vector<double> min, max;
  uint64_t rows = 0;
  uint64_t block_rows = 0;  // the rows of the block in hand
};

}  // namespace

ColumnStats compute_stats(const std::vector<std::string>& inputs, const CsvOptions& opt, Progress& progress) {
  BlockReader reader(inputs, opt.header, opt.delimiter, opt.threads);
  const size_t n = reader.n_columns();
  progress.total = reader.total_bytes();
  const size_t n_threads = opt.threads ? opt.threads : 1;
  std::vector<StatsWorker> workers(n_threads);
  for (auto& w : workers) {
    w.min.assign(n, std::numeric_limits<double>::infinity());
    w.max.assign(n, -std::numeric_limits<double>::infinity());
  }
  const char delim = opt.delimiter;

  PipelineSteps steps;
  steps.produce = [&](size_t w) { return reader.next(workers[w].block); };
  steps.work = [&](size_t w) {
    StatsWorker& s = workers[w];
    double* mn = s.min.data();
    double* mx = s.max.data();
    uint64_t rows = 0;
    for_each_line(s.block, n, [&](const char* a, const char* b, FieldError& err) {
      bool ok = for_each_value(a, b, delim, n, [&](size_t c, double v) {
        // v + 0.0 turns -0.0 into 0.0: otherwise which zero a column's min or max is (and so the sign of
        // zero in pass 2's output) would depend on the order the zeros come in, and on the threads.
        const double u = v + 0.0;
        mn[c] = std::min(u, mn[c]);  // minsd/maxsd: no branch to mispredict
        mx[c] = std::max(u, mx[c]);
      }, err);
      rows += ok;
      return ok;
    });
    s.rows += rows;
    s.block_rows = rows;
    progress.done += s.block.size;
  };
  std::vector<uint64_t> file_rows(inputs.size(), 0);
  steps.commit = [&](size_t w) { file_rows[workers[w].block.file_index] += workers[w].block_rows; };
  try {
    run_pipeline(n_threads, progress, steps);
  } catch (const RowErrorException& e) {
    throw describe(e.err, reader.file(e.err.file_index));
  }

  ColumnStats out;
  out.names = reader.names();
  out.min = std::move(workers[0].min);
  out.max = std::move(workers[0].max);
  out.n_rows = workers[0].rows;
  for (size_t w = 1; w < n_threads; ++w) {
    for (size_t c = 0; c < n; ++c) {
      if (workers[w].min[c] < out.min[c]) out.min[c] = workers[w].min[c];
      if (workers[w].max[c] > out.max[c]) out.max[c] = workers[w].max[c];
    }
    out.n_rows += workers[w].rows;
  }
  if (out.n_rows == 0) throw DataError(inputs[0] + ": no data rows");
  for (size_t i = 0; i < inputs.size(); ++i) out.inputs.push_back({reader.identity(i), file_rows[i]});
  return out;
}

}  // namespace wideann
