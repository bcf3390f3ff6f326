// Inverse transform: x * (max - min) + min, from a CSV or .npy of normalized values to CSV.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "engine.hpp"
#include "pipeline.hpp"
#include "tokenizer.hpp"
#include "writers.hpp"

namespace wideann {

namespace {

struct DenormalizeWorker {
  Block block;             // CSV input
  uint64_t row0 = 0, rows = 0;  // .npy input: the row range
  std::vector<char> raw;   // .npy input bytes
  std::vector<char> out;
  size_t out_size = 0;
  uint64_t n_out = 0;
};

// The stats column of each input column (see engine.hpp).
std::vector<size_t> resolve_columns(const std::string& input, size_t k, size_t n_stats,
                                    const std::vector<int64_t>& columns) {
  std::vector<size_t> idx;
  if (!columns.empty()) {
    if (columns.size() != k)
      throw DataError(input + ": has " + std::to_string(k) + " columns, but " + std::to_string(columns.size()) +
                      " stats columns were named for them");
    for (int64_t c : columns) {
      if (c < -static_cast<int64_t>(n_stats) || c >= static_cast<int64_t>(n_stats))
        throw DataError(input + ": stats column " + std::to_string(c) + " out of range");
      idx.push_back(static_cast<size_t>(c < 0 ? c + static_cast<int64_t>(n_stats) : c));
    }
  } else if (k == 1) {
    idx.push_back(n_stats - 1);  // predictions: the target is the last column
  } else if (k == n_stats) {
    for (size_t c = 0; c < k; ++c) idx.push_back(c);
  } else {
    throw DataError(input + ": has " + std::to_string(k) + " columns but the stats have " + std::to_string(n_stats) +
                    "; name the stats column of each input column (--columns)");
  }
  return idx;
}

// Without --columns, the stats column of each input column is taken by position (or the target for a
// one-column input). A header name that is the name of another stats column than that one (columns in
// another order, or a one-column input of another column than the target) would be denormalized with
// the wrong column's range without a word, so it is refused. Other names (y_pred) are taken as they are.
void check_header_names(const std::string& input, const std::string& line, const std::vector<std::string>& header,
                        const std::vector<size_t>& idx, const std::vector<std::string>& names, bool by_columns) {
  for (size_t j = 0; j < header.size(); ++j) {
    const size_t c = idx[j];
    if (c >= names.size() || header[j] == names[c]) continue;
    if (std::find(names.begin(), names.end(), header[j]) == names.end()) continue;
    const std::string where = input + ", " + line + ", column " + std::to_string(j + 1) + ": the header names " +
                              excerpt(header[j], 200) + ", ";
    if (by_columns)  // (its values would be put in another column's units, under its own name)
      throw DataError(where + "a column of the stats, but --columns reads it as " + excerpt(names[c], 200));
    if (header.size() == 1)
      throw DataError(where + "but a one-column input is read as the target " + excerpt(names[c], 200) +
                      "; give --columns " + excerpt(header[j], 200) + " if it is that column");
    throw DataError(where + "a column of the stats, but column " + std::to_string(j + 1) + " of the stats is " +
                    excerpt(names[c], 200) + "; give --columns (the stats column of each input column)");
  }
}

}  // namespace

uint64_t denormalize(const std::string& input, bool input_is_npy, const std::string& output,
                     const std::vector<double>& min, const std::vector<double>& max,
                     const std::vector<std::string>& names, const std::vector<int64_t>& columns,
                     const CsvOptions& opt, Progress& progress) {
  const size_t n_stats = min.size();
  std::unique_ptr<BlockReader> reader;
  std::unique_ptr<InputFile> npy_file;
  NpyInfo npy;
  size_t k;
  std::vector<std::string> out_names;
  if (input_is_npy) {
    npy_file = std::make_unique<InputFile>(input);
    npy = read_npy_header(npy_file->fd(), input);
    k = npy.cols;
    if (npy.rows == 0) throw DataError(input + ": no rows");
    uint64_t need = npy.data_offset + npy.rows * k * npy.item_size;
    if (npy_file->size() < need) throw DataError(input + ": truncated .npy data");
    progress.total = npy.rows * k * npy.item_size;
  } else {
    // a first line naming the columns this input may hold is a header under --header auto (see
    // BlockReader's `known`): all the stats' columns, the target alone, or those --columns names
    std::vector<std::vector<std::string>> known{names};
    if (!names.empty()) known.push_back({names.back()});
    if (!columns.empty()) {
      known.emplace_back();
      for (int64_t c : columns) known.back().push_back(c >= 0 && size_t(c) < names.size() ? names[c] : "");
    }
    reader = std::make_unique<BlockReader>(std::vector<std::string>{input}, opt.header, opt.delimiter, opt.threads,
                                           known);
    k = reader->n_columns();
    if (reader->first_file_has_header()) out_names = reader->names();
    progress.total = reader->total_bytes();
  }
  const std::vector<size_t> idx = resolve_columns(input, k, n_stats, columns);
  if (!out_names.empty()) check_header_names(input, reader->first_line(), out_names, idx, names, !columns.empty());
  if (out_names.empty())
    for (size_t c : idx) out_names.push_back(c < names.size() ? names[c] : "column" + std::to_string(c + 1));
  // (x * range + lo) * out_scale per input column (see column_scale).
  std::vector<double> lo(k), range(k), out_scale(k);
  for (size_t j = 0; j < k; ++j) out_scale[j] = 1.0 / column_scale(min[idx[j]], max[idx[j]], lo[j], range[j]);

  OutputFile out(output);
  std::string h = csv_header(out_names, ',');
  out.write(h.data(), h.size());

  const size_t n_threads = opt.threads ? opt.threads : 1;
  std::vector<DenormalizeWorker> workers(n_threads);
  // About a block of output text (up to ~24 bytes a value) per .npy block.
  const uint64_t rows_per_block = std::max<uint64_t>(1, block_size(opt.threads) / (k * 24));
  uint64_t next_row = 0, total_rows = 0;
  const char delim = opt.delimiter;

  // Appends input column j's value in original units; false (nothing appended) if it does not fit a
  // double, which only a value far outside [0, 1] can do: refused, never written as inf. x * range can
  // overflow where the result does not (x = 2 of -1e308 .. 0 is 1e308): once more in halves, exact.
  auto emit = [&](DenormalizeWorker& s, size_t j, double v) {
    double r = (v * range[j] + lo[j]) * out_scale[j];
    if (!std::isfinite(r)) r = (v * (0.5 * range[j]) + 0.5 * lo[j]) * (2 * out_scale[j]);
    if (!std::isfinite(r)) return false;
    if (j) append_char(s.out, s.out_size, ',');
    append_shortest(s.out, s.out_size, r);
    return true;
  };
  auto too_large = [](double v) {
    char text[32];  // (to_chars, not printf: '.' whatever LC_NUMERIC)
    *std::to_chars(text, text + sizeof text - 1, v, std::chars_format::general, 6).ptr = 0;
    return std::string("the normalized value ") + text + " is beyond a double in original units";
  };

  PipelineSteps steps;
  steps.produce = [&](size_t w) {
    DenormalizeWorker& s = workers[w];
    if (!input_is_npy) return reader->next(s.block);
    if (next_row >= npy.rows) return false;
    s.row0 = next_row;
    s.rows = std::min(rows_per_block, npy.rows - next_row);
    next_row += s.rows;
    return true;
  };
  steps.work = [&](size_t w) {
    DenormalizeWorker& s = workers[w];
    s.out_size = 0;
    s.n_out = 0;
    if (input_is_npy) {
      size_t bytes = static_cast<size_t>(s.rows * k * npy.item_size);
      if (s.raw.size() < bytes) s.raw.resize(bytes);
      if (pread_fully(npy_file->fd(), s.raw.data(), bytes, npy.data_offset + s.row0 * k * npy.item_size, input) != bytes)
        throw DataError(input + ": truncated .npy data");
      for (uint64_t r = 0; r < s.rows; ++r) {
        for (size_t j = 0; j < k; ++j) {
          const char* p = s.raw.data() + (r * k + j) * npy.item_size;
          double v;
          if (npy.item_size == 4) { float f; std::memcpy(&f, p, 4); v = f; }
          else if (npy.item_size == 2) { uint16_t b; std::memcpy(&b, p, 2); v = half_bits_to_float(b); }
          else std::memcpy(&v, p, 8);
          if (!std::isfinite(v))
            throw DataError(input + ", row " + std::to_string(s.row0 + r + 1) + ", column " + std::to_string(j + 1) +
                            ": expected a finite number, found " + (std::isnan(v) ? "nan" : "inf"));
          if (!emit(s, j, v))
            throw DataError(input + ", row " + std::to_string(s.row0 + r + 1) + ", column " + std::to_string(j + 1) +
                            ": " + too_large(v));
        }
        append_char(s.out, s.out_size, '\n');
      }
      s.n_out = s.rows;
      progress.done += bytes;
      return;
    }
    for_each_line(s.block, k, [&](const char* a, const char* b, FieldError& err) {
      size_t over = 0;  // 1-based column of the first value that did not fit
      double over_v = 0;
      bool ok = for_each_value(a, b, delim, k, [&](size_t j, double v) {
        if (!emit(s, j, v) && !over) over = j + 1, over_v = v;
      }, err);
      if (ok && over) {
        err.column = over;
        err.message = too_large(over_v);
        ok = false;
      }
      append_char(s.out, s.out_size, '\n');
      s.n_out += ok;
      return ok;
    });
    progress.done += s.block.size;
  };
  steps.commit = [&](size_t w) {
    out.write(workers[w].out.data(), workers[w].out_size);
    total_rows += workers[w].n_out;
  };
  try {
    run_pipeline(n_threads, progress, steps);
  } catch (const RowErrorException& e) {
    if (!reader) throw;  // (only a CSV's lines give one)
    throw describe(e.err, reader->file(e.err.file_index));
  }
  out.commit(&progress);
  return total_rows;
}

}  // namespace wideann
