// CSV tokenizer: splits a line into fields and parses each as a finite double.
//
// The fast path is one std::from_chars per field, which stops exactly at the delimiter for ordinary
// numbers, so no separate delimiter search is needed. Anything else (quotes, spaces, a leading '+',
// empty fields, junk) falls to a slow path that either parses it or explains what is wrong.
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace wideann {

// Why a field or a row could not be read: a 1-based column and a message, or ok.
struct FieldError {
  size_t column = 0;  // 0: no error
  std::string message;
  explicit operator bool() const { return column != 0; }
};

// Slow path for one field starting at p: handles quotes, surrounding spaces, a leading '+'.
// On success stores the value and returns the position of the delimiter or `end`; on failure returns
// nullptr and fills `err` (column is filled by the caller).
const char* parse_field_slow(const char* p, const char* end, char delim, double& value, std::string& err);

// Powers of ten that are exact doubles (Clinger's fast path).
constexpr double kExactPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

// The bytes a caller must have readable past the end of a line: the digit reader below loads 8 bytes at
// a time (block buffers are padded by this much).
constexpr size_t kReadPadding = 16;

// Appends the run of ASCII digits at `s` (not past `end`) to m (m = m * 10^len + digits) and returns
// its length. Eight bytes at a time, without a branch per digit (the SWAR tricks of fast_float and
// simdjson): on a wide table each column has its own number of digits, so a byte-by-byte loop
// mispredicts its exit on nearly every field.
inline size_t append_digit_run(const char* s, const char* end, uint64_t& m) {
  static constexpr uint64_t kPow10[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
  size_t total = 0;
  for (;;) {
    uint64_t v;
    std::memcpy(&v, s, 8);
    // High bit of each byte that is not '0'..'9'; the lowest one marks the end of the run exactly
    // (bytes below it are digits, so no carry or borrow reaches it).
    const uint64_t non_digit = ((v + 0x4646464646464646ull) | (v - 0x3030303030303030ull)) & 0x8080808080808080ull;
    // Index of the first non-digit byte, 8 when there is none (the sentinel bit 63 gives (63+1)/8);
    // never zero, so no branch on it.
    size_t n = static_cast<size_t>(__builtin_ctzll((non_digit >> 7) | (uint64_t(1) << 63)) + 1) >> 3;
    const size_t left = static_cast<size_t>(end - s);
    n = n < left ? n : left;
    // The n digits, as the low digits of an 8-digit number with leading zeros, to an integer (0 when
    // n is 0: two shifts, since one shift by 64 is undefined).
    const unsigned half_shift = static_cast<unsigned>(4 * (8 - n));
    uint64_t x = ((v - 0x3030303030303030ull) << half_shift) << half_shift;
    x = x * 10 + (x >> 8);
    x = (((x & 0x000000FF000000FFull) * 0x000F424000000064ull) +
         (((x >> 16) & 0x000000FF000000FFull) * 0x0000271000000001ull)) >> 32;
    m = m * kPow10[n] + static_cast<uint32_t>(x);
    total += n;
    if (n < 8) return total;
    s += 8;
  }
}

// How runs of digits are read. A byte-by-byte loop is fastest when the branch predictor can learn each
// column's number of digits, which it does for tables of up to about 3,000 columns; on wider tables
// it mispredicts on nearly every field and the branch-free reader wins. Measured
// in benchmarks/README.md ("Digit reader").
// WIDEANN_DIGIT_READER=loop|branch-free forces one (benchmarks/digit_reader.py compares them).
enum class DigitReader { Loop, BranchFree };
constexpr size_t kBranchFreeFromColumns = 3000;
DigitReader digit_reader_for(size_t n_cols);

// Parses one field; returns the position just past it (at the delimiter or `end`), or nullptr.
//
// Fast path for the common shape [-]digits[.digits][e[+-]digits]: with at most 2^53 as the digit value
// and a power of ten of at most 22, value = digits / 10^k (or * 10^k) is one correctly rounded IEEE
// operation on two exact doubles, so the result is exactly what from_chars gives. Everything else
// goes to from_chars, then to the slow path. Reads up to kReadPadding bytes past `end`.
template <DigitReader kReader = DigitReader::Loop>
inline const char* parse_field(const char* p, const char* end, char delim, double& value,
                               std::string& err) {
  // A template parameter, not a run-time switch: each instantiation stays small enough to inline.
  const char* s = p;
  uint64_t m = 0;
  int n_digits, exp10 = 0;
  bool neg;
  if constexpr (kReader == DigitReader::BranchFree) {
    neg = (s < end) & (*s == '-');
    s += neg;
    size_t run = append_digit_run(s, end, m);
    s += run;
    n_digits = static_cast<int>(run);
    if (s < end && *s == '.') {
      ++s;
      run = append_digit_run(s, end, m);
      s += run;
      exp10 = -static_cast<int>(run);
      n_digits += static_cast<int>(run);
    }
  } else {
    neg = s < end && *s == '-';
    s += neg;
    const char* d0 = s;
    while (s < end && static_cast<unsigned>(*s - '0') < 10) m = m * 10 + static_cast<unsigned>(*s++ - '0');
    n_digits = static_cast<int>(s - d0);
    if (s < end && *s == '.') {
      const char* f0 = ++s;
      while (s < end && static_cast<unsigned>(*s - '0') < 10) m = m * 10 + static_cast<unsigned>(*s++ - '0');
      exp10 = -static_cast<int>(s - f0);
      n_digits -= exp10;
    }
  }
  if (s < end && (*s == 'e' || *s == 'E')) {
    const char* e = s + 1;
    const bool eneg = e < end && *e == '-';
    e += (e < end && (*e == '-' || *e == '+'));
    int x = 0;
    const char* x0 = e;
    while (e < end && static_cast<unsigned>(*e - '0') < 10 && e - x0 < 6) x = x * 10 + (*e++ - '0');
    if (e == x0) n_digits = 0;  // "1e": not a number; let the slow path say so
    exp10 += eneg ? -x : x;
    s = e;
  }
  if (n_digits > 0 && n_digits <= 19 && m <= (uint64_t(1) << 53) && exp10 >= -22 && exp10 <= 22 &&
      (s == end || *s == delim)) {
    double v = static_cast<double>(m);
    v = exp10 < 0 ? v / kExactPow10[-exp10] : v * kExactPow10[exp10];
    if constexpr (kReader == DigitReader::BranchFree) {
      // The sign without a branch: columns of a wide table each have their own sign pattern.
      uint64_t bits;
      std::memcpy(&bits, &v, 8);
      bits |= static_cast<uint64_t>(neg) << 63;
      std::memcpy(&value, &bits, 8);
    } else {
      value = neg ? -v : v;  // on a narrow table the predictor learns each column's sign
    }
    return s;
  }
  auto r = std::from_chars(p, end, value);
  if (r.ec == std::errc() && (r.ptr == end || *r.ptr == delim) && std::isfinite(value)) return r.ptr;
  return parse_field_slow(p, end, delim, value, err);
}

// for_each_value with a given digit reader.
template <DigitReader kReader, class Fn>
inline bool for_each_value_with(const char* p, const char* end, char delim, size_t n_cols, Fn& fn,
                                FieldError& err) {
  double v;
  for (size_t c = 0; c < n_cols; ++c) {
    if (p > end) {  // ran out of fields: the previous one ended the line
      err.column = c + 1;
      err.message = "expected " + std::to_string(n_cols) + " fields, found " + std::to_string(c);
      return false;
    }
    const char* q = parse_field<kReader>(p, end, delim, v, err.message);
    if (q == nullptr) {
      err.column = c + 1;
      return false;
    }
    fn(c, v);
    p = q + 1;  // skip the delimiter (or step past `end`)
  }
  if (p <= end) {  // a delimiter followed the last expected field
    size_t found = n_cols + 1;
    for (const char* q = p; q < end; ++q) found += (*q == delim);
    err.column = n_cols + 1;
    err.message = "expected " + std::to_string(n_cols) + " fields, found " + std::to_string(found);
    return false;
  }
  return true;
}

// Calls fn(column_index, value) for each of the `n_cols` fields of a line (no newline, no '\r').
// Returns false and fills `err` on a bad field or a wrong number of fields.
template <class Fn>
inline bool for_each_value(const char* p, const char* end, char delim, size_t n_cols, Fn&& fn,
                           FieldError& err) {
  if (digit_reader_for(n_cols) == DigitReader::BranchFree)
    return for_each_value_with<DigitReader::BranchFree>(p, end, delim, n_cols, fn, err);
  return for_each_value_with<DigitReader::Loop>(p, end, delim, n_cols, fn, err);
}

// Splits a line into raw field texts (quote-aware: "a,b" is one field, "" is an escaped quote).
std::vector<std::string> split_fields(const char* p, const char* end, char delim);

// True if the text (after trimming spaces and quotes) is a number from_chars accepts, NaN and inf
// included: a header is a first line with at least one non-empty field that is not a number.
bool looks_numeric(const std::string& field);

// Strips one trailing '\r' (CRLF input).
inline const char* line_end_without_cr(const char* begin, const char* end) {
  return (end > begin && end[-1] == '\r') ? end - 1 : end;
}

}  // namespace wideann
