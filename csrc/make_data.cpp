// Raw example data: y = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5 + noise * N(0, 1)
// (Friedman #1), with x ~ U(0, 1); inputs after the fifth are pure noise. Each input column is then
// put on its own scale and offset (raw = offset + scale * x, scale = 10^U(-3, 3), offset = scale *
// U(-10, 10)), so normalization matters; y keeps Friedman's units, so that `noise` is the best RMSE
// any model can reach. The scales and offsets depend on the column alone, not on the seed, so files
// made with different seeds are draws from one distribution (a test set is `--seed 2`). Every 1,024
// rows draw from a seeded stream of their own, so the bytes depend only on the seed, not on the thread
// count; threads take pieces of a few MB of text each (a few rows of a wide table), starting each piece
// where its rows are in their stream (the generator is a counter: it jumps there at once), so memory
// stays small however wide the table.
#include <algorithm>
#include <charconv>
#include <cmath>

#include "engine.hpp"
#include "pipeline.hpp"
#include "writers.hpp"

namespace wideann {

namespace {

// SplitMix64: small, fast, and good enough for example data.
struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed) {}
  static constexpr uint64_t kStep = 0x9E3779B97F4A7C15ull;
  uint64_t next() {
    uint64_t z = (state += kStep);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  void skip(uint64_t draws) { state += draws * kStep; }  // as `draws` calls of next(), at once
  double normal() {  // Box-Muller: two draws
    double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }
};

constexpr uint64_t kRowsPerStream = 1024;  // rows drawn from one seeded stream (fixes the bytes: never change)
constexpr size_t kPieceBytes = 4 << 20;     // text a thread makes at a time (about: ~11 bytes a value)

void append_number(std::vector<char>& out, size_t& n, double v) {
  if (out.size() < n + 32) out.resize((n + 32) * 2);
  n = static_cast<size_t>(
      std::to_chars(out.data() + n, out.data() + out.size(), v, std::chars_format::general, 7).ptr - out.data());
}

struct MakeDataWorker {
  uint64_t piece = 0;
  std::vector<char> out;
  size_t out_size = 0;
  std::vector<double> x;
};

}  // namespace

void make_data(const std::string& output, uint64_t rows, size_t cols, uint64_t seed, double noise,
               size_t threads, Progress& progress) {
  if (cols < 6) throw DataError("make-data needs at least 6 columns");
  const size_t n_in = cols - 1;
  std::vector<double> scale(n_in), offset(n_in);
  for (size_t j = 0; j < n_in; ++j) {
    Rng col_rng(0x5EEDC01Dull + j);  // the column's own stream: the same in every file
    scale[j] = std::pow(10.0, -3.0 + 6.0 * col_rng.uniform());
    offset[j] = scale[j] * (-10.0 + 20.0 * col_rng.uniform());
  }

  OutputFile out(output);
  std::vector<std::string> names;
  for (size_t j = 1; j <= n_in; ++j) names.push_back("x" + std::to_string(j));
  names.push_back("y");
  std::string h = csv_header(names, ',');
  out.write(h.data(), h.size());

  // a piece: whole rows, about kPieceBytes of text, never across a stream's end
  const uint64_t piece_rows = std::clamp<uint64_t>(kPieceBytes / (cols * 11), 1, kRowsPerStream);
  const uint64_t pieces_per_stream = (kRowsPerStream + piece_rows - 1) / piece_rows;
  const uint64_t n_pieces = (rows / kRowsPerStream) * pieces_per_stream +
                            (rows % kRowsPerStream + piece_rows - 1) / piece_rows;
  progress.total = rows * cols * 11;  // an estimate: about 11 bytes a value
  uint64_t next_piece = 0;
  const size_t n_threads = threads ? threads : 1;
  std::vector<MakeDataWorker> workers(n_threads);

  PipelineSteps steps;
  steps.produce = [&](size_t w) {
    if (next_piece >= n_pieces) return false;
    workers[w].piece = next_piece++;
    return true;
  };
  steps.work = [&](size_t w) {
    MakeDataWorker& s = workers[w];
    const uint64_t stream = s.piece / pieces_per_stream, first = (s.piece % pieces_per_stream) * piece_rows;
    Rng rng(Rng(seed * 0x2545F4914F6CDD1Dull + stream).next());
    rng.skip(first * (n_in + 2));  // a row draws n_in inputs and one normal
    s.out_size = 0;
    s.x.resize(n_in);
    const uint64_t r0 = stream * kRowsPerStream + first;
    const uint64_t r1 = std::min({rows, r0 + piece_rows, (stream + 1) * kRowsPerStream});
    for (uint64_t r = r0; r < r1; ++r) {
      for (size_t j = 0; j < n_in; ++j) s.x[j] = rng.uniform();
      const double* x = s.x.data();
      double y = 10.0 * std::sin(M_PI * x[0] * x[1]) + 20.0 * (x[2] - 0.5) * (x[2] - 0.5) + 10.0 * x[3] + 5.0 * x[4];
      y += noise * rng.normal();
      for (size_t j = 0; j < n_in; ++j) {
        append_number(s.out, s.out_size, offset[j] + scale[j] * x[j]);
        append_char(s.out, s.out_size, ',');
      }
      append_number(s.out, s.out_size, y);
      append_char(s.out, s.out_size, '\n');
    }
  };
  steps.commit = [&](size_t w) {
    out.write(workers[w].out.data(), workers[w].out_size);
    progress.done += workers[w].out_size;
  };
  run_pipeline(n_threads, progress, steps);
  progress.total = progress.done.load();
  out.commit(&progress);
}

}  // namespace wideann
