// Pass 2: (v - min) / (max - min) for every value, written as .npy (float32/float16) or CSV.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "engine.hpp"
#include "pipeline.hpp"
#include "tokenizer.hpp"
#include "writers.hpp"

namespace wideann {

namespace {

struct NormalizeWorker {
  Block block;
  std::vector<char> out;  // this block's output bytes
  size_t out_size = 0;
  uint64_t rows = 0;
  std::vector<double> x;       // the row being written, normalized, in double
  std::vector<uint16_t> half;  // ... and as float16 (CSV output)
};

// 1-based column of the first value that rounded to inf (beyond the output type's range), or 0.
size_t first_inf_float(const char* row, size_t n) {
  for (size_t c = 0; c < n; ++c) {
    uint32_t u;
    std::memcpy(&u, row + 4 * c, 4);
    if ((u & 0x7fffffff) == 0x7f800000) return c + 1;
  }
  return 0;
}
size_t first_inf(const uint16_t* h, size_t n) {
  for (size_t c = 0; c < n; ++c)
    if ((h[c] & 0x7fff) == 0x7c00) return c + 1;
  return 0;
}

}  // namespace

uint64_t normalize(const std::vector<std::string>& inputs, const std::string& output,
                   const std::vector<double>& min, const std::vector<double>& max,
                   const std::vector<std::string>& names, const NormalizeOptions& opt, Progress& progress) {
  // (a first line naming the stats' columns is a header under --header auto: see BlockReader's `known`)
  BlockReader reader(inputs, opt.csv.header, opt.csv.delimiter, opt.csv.threads, {names});
  // A fit: the inputs must be the files pass 1 read (checked again at each one's end, by the reader).
  const bool expect = !opt.expect.empty();
  if (expect && opt.expect.size() != inputs.size())
    throw std::invalid_argument("expect: " + std::to_string(opt.expect.size()) + " inputs, not " + std::to_string(inputs.size()));
  for (size_t i = 0; expect && i < inputs.size(); ++i)
    if (reader.identity(i) != opt.expect[i].file)
      throw DataError(inputs[i] + ": changed while it was being normalized (" +
                      identity_change(opt.expect[i].file, reader.identity(i), "when pass 1 read it") +
                      "): its stats do not describe it; run again once it no longer changes");
  const size_t n = reader.n_columns();
  if (n != min.size() || n != max.size())
    throw DataError(inputs[0] + ", " + reader.first_line() + ": expected " + std::to_string(min.size()) +
                    " fields (as in the stats), found " + std::to_string(n));
  // A header that names the columns differently from the stats (say, in another order) is refused:
  // applying the wrong column's min and max would be silently wrong.
  if (reader.first_file_has_header() && names.size() == n) {
    for (size_t c = 0; c < n; ++c)
      if (reader.names()[c] != names[c])
        throw DataError(inputs[0] + ", " + reader.first_line() + ", column " + std::to_string(c + 1) + ": expected header " +
                        excerpt(names[c], 200) + " (as in the stats), found " + excerpt(reader.names()[c], 200));
  }
  progress.total = reader.total_bytes();

  // Per column: x = (v * in_scale - lo) / range (see column_scale), with range 0 marking a constant
  // column (maps to 0).
  std::vector<double> lo(n), range(n), in_scale(n);
  for (size_t c = 0; c < n; ++c) in_scale[c] = column_scale(min[c], max[c], lo[c], range[c]);

  OutputFile out(output, opt.temporary);
  const bool npy = opt.format == OutputFormat::Npy;
  const bool half = opt.dtype == OutputDtype::Float16;
  const std::string descr = half ? "<f2" : "<f4";
  const size_t item = half ? 2 : 4;
  uint64_t header_size = 0;
  if (npy) {
    std::string h = npy_header(descr, 0, n);
    out.write(h.data(), h.size());
    header_size = h.size();
  } else {
    std::string h = csv_header(names.size() == n ? names : reader.names(), ',');
    out.write(h.data(), h.size());
  }

  const size_t n_threads = opt.csv.threads ? opt.csv.threads : 1;
  std::vector<NormalizeWorker> workers(n_threads);
  const char delim = opt.csv.delimiter;
  const bool clip = opt.clip;
  uint64_t total_rows = 0;
  std::vector<uint64_t> file_rows(inputs.size(), 0);

  PipelineSteps steps;
  steps.produce = [&](size_t w) { return reader.next(workers[w].block); };
  steps.work = [&](size_t w) {
    NormalizeWorker& s = workers[w];
    s.out_size = 0;
    s.rows = 0;
    s.x.resize(n);
    if (half && !npy) s.half.resize(n);
    const double* plo = lo.data();
    const double* prange = range.data();
    const double* pscale = in_scale.data();
    double* x = s.x.data();
    for_each_line(s.block, n, [&](const char* a, const char* b, FieldError& err) {
      auto scaled = [&](size_t c, double v) {
        // (+ 0.0: a value equal to the min gives 0, never -0, whichever zero either was spelled as)
        double r = prange[c] != 0 ? (v * pscale[c] - plo[c]) / prange[c] + 0.0 : 0.0;
        // Test data far outside the fitted range can overflow v - min (say 1e308 - -1e308) where the
        // result does not (2): once more in halves, which are exact.
        if (!std::isfinite(r) && prange[c] != 0)
          r = (0.5 * (v * pscale[c]) - 0.5 * plo[c]) / (0.5 * prange[c]) + 0.0;
        return clip ? std::min(1.0, std::max(0.0, r)) : r;
      };
      if (s.out.size() < s.out_size + n * item) s.out.resize((s.out_size + n * item) * 2);
      char* dst = s.out.data() + s.out_size;
      // float32 .npy: each value rounded as it is parsed (the fast path). Otherwise the row is parsed
      // into x first, then rounded at once (float16: a whole row for the F16C conversion).
      auto to_x = [&](size_t c, double v) { x[c] = scaled(c, v); };
      bool ok = npy && !half
          ? for_each_value(a, b, delim, n, [&](size_t c, double v) {
              const float fr = static_cast<float>(scaled(c, v));
              std::memcpy(dst + 4 * c, &fr, 4);
            }, err)
          : for_each_value(a, b, delim, n, to_x, err);
      if (!ok) return false;
      // A value beyond the output type's range (a test value far outside the fitted range) is
      // refused, never written as inf.
      size_t over;
      uint16_t* h = half ? (npy ? reinterpret_cast<uint16_t*>(dst) : s.half.data()) : nullptr;
      if (half) {
        to_half_bits(x, h, n);
        over = first_inf(h, n);
      } else if (npy) {
        over = first_inf_float(dst, n);
        if (over) for_each_value(a, b, delim, n, to_x, err);  // rare: the row again, for the message
      } else {
        over = 0;
        for (size_t c = 0; c < n && !over; ++c)
          if (std::isinf(static_cast<float>(x[c]))) over = c + 1;
      }
      if (over) {
        char text[32];  // (to_chars, not printf: '.' whatever LC_NUMERIC)
        *std::to_chars(text, text + sizeof text - 1, x[over - 1], std::chars_format::general, 6).ptr = 0;
        err.column = over;
        err.message = std::string("normalized value ") + text +
                      (half ? " does not fit float16 (at most 65504)"  // (the advice: the caller's, in its terms)
                            : " does not fit float32 (at most 3.40282e+38)");
        return false;
      }
      if (npy) {
        s.out_size += n * item;
      } else {
        for (size_t c = 0; c < n; ++c) {
          if (c) append_char(s.out, s.out_size, ',');
          append_shortest(s.out, s.out_size, half ? half_bits_to_float(h[c]) : static_cast<float>(x[c]));
        }
        append_char(s.out, s.out_size, '\n');
      }
      ++s.rows;
      return true;
    });
    progress.done += s.block.size;
  };
  steps.commit = [&](size_t w) {
    out.write(workers[w].out.data(), workers[w].out_size);
    total_rows += workers[w].rows;
    file_rows[workers[w].block.file_index] += workers[w].rows;
  };
  try {
    run_pipeline(n_threads, progress, steps);
  } catch (const RowErrorException& e) {
    throw describe(e.err, reader.file(e.err.file_index));
  }
  if (total_rows == 0) throw DataError(inputs[0] + ": no data rows");
  for (size_t i = 0; expect && i < inputs.size(); ++i)  // (the last guard: a change within a clock tick)
    if (file_rows[i] != opt.expect[i].rows)
      throw DataError(inputs[i] + ": changed while it was being normalized (pass 1 read " +
                      std::to_string(opt.expect[i].rows) + " rows, pass 2 found " + std::to_string(file_rows[i]) +
                      "): its stats do not describe it; run again once it no longer changes");
  if (npy) {
    std::string h = npy_header(descr, total_rows, n);
    if (h.size() != header_size) throw std::logic_error("npy header changed size");
    out.write_at(0, h.data(), h.size());
  }
  out.commit();
  return total_rows;
}

}  // namespace wideann
