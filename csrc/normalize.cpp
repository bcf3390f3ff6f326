// Pass 2: (v - min) / (max - min) for every value, written as .npy (float32/float16) or CSV.
#include <algorithm>
#include <cmath>
#include <cstdio>

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
};

}  // namespace

uint64_t normalize(const std::vector<std::string>& inputs, const std::string& output,
                   const std::vector<double>& min, const std::vector<double>& max,
                   const std::vector<std::string>& names, const NormalizeOptions& opt, Progress& progress) {
  BlockReader reader(inputs, opt.csv.header, opt.csv.delimiter, opt.csv.threads);
  const size_t n = reader.n_columns();
  if (n != min.size() || n != max.size())
    throw DataError(inputs[0] + ", line 1: expected " + std::to_string(min.size()) +
                    " fields (as in the stats), found " + std::to_string(n));
  // A header that names the columns differently from the stats (say, in another order) is refused:
  // applying the wrong column's min and max would be silently wrong.
  if (reader.first_file_has_header() && names.size() == n) {
    for (size_t c = 0; c < n; ++c)
      if (reader.names()[c] != names[c])
        throw DataError(inputs[0] + ", line 1, column " + std::to_string(c + 1) + ": expected header " +
                        excerpt(names[c], 200) + " (as in the stats), found " + excerpt(reader.names()[c], 200));
  }
  progress.total = reader.total_bytes();

  // Per column: x = (v * in_scale - lo) / range (see column_scale), with range 0 marking a constant
  // column (maps to 0).
  std::vector<double> lo(n), range(n), in_scale(n);
  for (size_t c = 0; c < n; ++c) in_scale[c] = column_scale(min[c], max[c], lo[c], range[c]);

  OutputFile out(output);
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

  PipelineSteps steps;
  steps.produce = [&](size_t w) { return reader.next(workers[w].block); };
  steps.work = [&](size_t w) {
    NormalizeWorker& s = workers[w];
    s.out_size = 0;
    s.rows = 0;
    const double* plo = lo.data();
    const double* prange = range.data();
    const double* pscale = in_scale.data();
    for_each_line(s.block, [&](const char* a, const char* b, FieldError& err) {
      auto scaled = [&](size_t c, double v) {
        double x = prange[c] != 0 ? (v * pscale[c] - plo[c]) / prange[c] : 0.0;
        if (clip) x = std::min(1.0, std::max(0.0, x));
        return x;
      };
      // float16 holds at most 65504: a test value that far outside the fitted range is refused, not
      // written as inf.
      size_t overflow_col = 0;
      double overflow_x = 0;
      auto to_half = [&](size_t c, double x) {
        uint16_t h = to_half_bits(x);
        if ((h & 0x7fff) == 0x7c00 && !overflow_col) overflow_col = c + 1, overflow_x = x;
        return h;
      };
      bool ok;
      if (npy) {
        if (s.out.size() < s.out_size + n * item) s.out.resize((s.out_size + n * item) * 2);
        char* dst = s.out.data() + s.out_size;
        if (half) {
          ok = for_each_value(a, b, delim, n, [&](size_t c, double v) {
            uint16_t h = to_half(c, scaled(c, v));
            std::memcpy(dst + 2 * c, &h, 2);
          }, err);
        } else {
          ok = for_each_value(a, b, delim, n, [&](size_t c, double v) {
            float f = static_cast<float>(scaled(c, v));
            std::memcpy(dst + 4 * c, &f, 4);
          }, err);
        }
        s.out_size += n * item;
      } else {
        ok = for_each_value(a, b, delim, n, [&](size_t c, double v) {
          if (c) append_char(s.out, s.out_size, ',');
          double x = scaled(c, v);
          if (half) append_shortest(s.out, s.out_size, half_bits_to_float(to_half(c, x)));
          else append_shortest(s.out, s.out_size, static_cast<float>(x));
        }, err);
        append_char(s.out, s.out_size, '\n');
      }
      if (ok && overflow_col) {
        err.column = overflow_col;
        char text[32];
        std::snprintf(text, sizeof text, "%.6g", overflow_x);
        err.message = std::string("normalized value ") + text + " does not fit float16 (at most 65504); use --dtype float32";
        ok = false;
      }
      s.rows += ok;
      return ok;
    });
    progress.done += s.block.size;
  };
  steps.commit = [&](size_t w) {
    out.write(workers[w].out.data(), workers[w].out_size);
    total_rows += workers[w].rows;
  };
  try {
    run_pipeline(n_threads, progress, steps);
  } catch (const RowErrorException& e) {
    throw describe(e.err, inputs);
  }
  if (total_rows == 0) throw DataError(inputs[0] + ": no data rows");
  if (npy) {
    std::string h = npy_header(descr, total_rows, n);
    if (h.size() != header_size) throw std::logic_error("npy header changed size");
    out.write_at(0, h.data(), h.size());
  }
  out.commit();
  return total_rows;
}

}  // namespace wideann
