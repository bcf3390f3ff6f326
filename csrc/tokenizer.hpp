// CSV tokenizer: splits a line into fields and parses each as a finite double.
//
// The fast path is one std::from_chars per field, which stops exactly at the delimiter for ordinary
// numbers, so no separate delimiter search is needed. Anything else (quotes, spaces, a leading '+',
// empty fields, junk) falls to a slow path that either parses it or explains what is wrong.
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
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

// Parses one field; returns the position just past it (at the delimiter or `end`), or nullptr.
inline const char* parse_field(const char* p, const char* end, char delim, double& value,
                               std::string& err) {
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
