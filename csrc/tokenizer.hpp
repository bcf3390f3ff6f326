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

// Parses one field; returns the position just past it (at the delimiter or `end`), or nullptr.
//
// Fast path for the common shape [-]digits[.digits][e[+-]digits]: with at most 2^53 as the digit value
// and a power of ten of at most 22, value = digits / 10^k (or * 10^k) is one correctly rounded IEEE
// operation on two exact doubles, so the result is exactly what from_chars gives. Everything else
// goes to from_chars, then to the slow path.
inline const char* parse_field(const char* p, const char* end, char delim, double& value,
                               std::string& err) {
  const char* s = p;
  const bool neg = s < end && *s == '-';
  s += neg;
  uint64_t m = 0;
  const char* d0 = s;
  while (s < end && static_cast<unsigned>(*s - '0') < 10) m = m * 10 + static_cast<unsigned>(*s++ - '0');
  int n_digits = static_cast<int>(s - d0);
  int exp10 = 0;
  if (s < end && *s == '.') {
    const char* f0 = ++s;
    while (s < end && static_cast<unsigned>(*s - '0') < 10) m = m * 10 + static_cast<unsigned>(*s++ - '0');
    exp10 = -static_cast<int>(s - f0);
    n_digits -= exp10;
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
    value = neg ? -v : v;
    return s;
  }
  auto r = std::from_chars(p, end, value);
  if (r.ec == std::errc() && (r.ptr == end || *r.ptr == delim) && std::isfinite(value)) return r.ptr;
  return parse_field_slow(p, end, delim, value, err);
}

// Calls fn(column_index, value) for each of the `n_cols` fields of a line (no newline, no '\r').
// Returns false and fills `err` on a bad field or a wrong number of fields.
template <class Fn>
inline bool for_each_value(const char* p, const char* end, char delim, size_t n_cols, Fn&& fn,
                           FieldError& err) {
  double v;
  for (size_t c = 0; c < n_cols; ++c) {
    if (p > end) {  // ran out of fields: the previous one ended the line
      err.column = c + 1;
      err.message = "expected " + std::to_string(n_cols) + " fields, found " + std::to_string(c);
      return false;
    }
    const char* q = parse_field(p, end, delim, v, err.message);
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
