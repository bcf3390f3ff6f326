#include "tokenizer.hpp"

#include <cstdlib>
#include <cstring>

#include "common.hpp"

namespace wideann {

namespace {

inline bool is_space(char c, char delim) { return (c == ' ' || c == '\t') && c != delim; }

// The end of the field that starts at p: the next delimiter outside quotes, or `end`.
const char* field_end(const char* p, const char* end, char delim) {
  bool quoted = false;
  for (; p < end; ++p) {
    if (*p == '"') quoted = !quoted;
    else if (*p == delim && !quoted) return p;
  }
  return end;
}

// For a number from_chars found out of double range: whether it is too small (it rounds to zero, as
// Python's float() and strtod give it) rather than too large. The decimal exponent of its first
// non-zero digit decides: below 0 the number is below 1, so it cannot be too large.
bool underflows(const char* p, const char* end) {
  if (p < end && (*p == '-' || *p == '+')) ++p;
  long long before_point = 0, leading_zeros = 0;  // digits before the point; zeros after it before a digit
  bool point = false, nonzero = false;
  for (; p < end && ((*p >= '0' && *p <= '9') || *p == '.'); ++p) {
    if (*p == '.') { point = true; continue; }
    if (!nonzero && *p == '0') { if (point) ++leading_zeros; continue; }
    nonzero = true;
    if (!point && before_point < (1LL << 40)) ++before_point;
  }
  long long exponent = 0;
  if (p < end && (*p == 'e' || *p == 'E')) {
    ++p;
    bool neg = p < end && *p == '-';
    if (p < end && (*p == '-' || *p == '+')) ++p;
    for (; p < end && *p >= '0' && *p <= '9'; ++p)
      if (exponent < (1LL << 40)) exponent = exponent * 10 + (*p - '0');
    if (neg) exponent = -exponent;
  }
  const long long magnitude = (before_point > 0 ? before_point : -leading_zeros) + exponent;
  return nonzero && magnitude <= 0;
}

}  // namespace

DigitReader digit_reader_for(size_t n_cols) {
  static const int forced = [] {  // -1: choose by width; 0: loop; 1: branch-free
    const char* env = std::getenv("WIDEANN_DIGIT_READER");
    if (!env) return -1;
    if (std::strcmp(env, "loop") == 0) return 0;
    if (std::strcmp(env, "branch-free") == 0) return 1;
    return -1;
  }();
  if (forced >= 0) return forced ? DigitReader::BranchFree : DigitReader::Loop;
  return n_cols >= kBranchFreeFromColumns ? DigitReader::BranchFree : DigitReader::Loop;
}

const char* parse_field_slow(const char* p, const char* end, char delim, double& value, std::string& err) {
  const char* fend = field_end(p, end, delim);
  const char* a = p;
  const char* b = fend;
  while (a < b && is_space(*a, delim)) ++a;
  while (b > a && is_space(b[-1], delim)) --b;
  if (b - a >= 2 && *a == '"' && b[-1] == '"') {  // a quoted number: "1.5"
    ++a;
    --b;
    while (a < b && is_space(*a, delim)) ++a;
    while (b > a && is_space(b[-1], delim)) --b;
  }
  if (a == b) {
    err = "expected a number, found an empty field";
    return nullptr;
  }
  const char* s = a;
  if (*s == '+' && s + 1 < b && (s[1] == '.' || (s[1] >= '0' && s[1] <= '9'))) ++s;  // from_chars refuses '+'
  auto r = std::from_chars(s, b, value);
  if (r.ec == std::errc::result_out_of_range && r.ptr == b && underflows(s, b)) {
    value = *s == '-' ? -0.0 : 0.0;  // below the smallest double (1e-400): zero, correctly rounded
    return fend;
  }
  if (r.ec == std::errc::result_out_of_range) {
    err = "expected a number within double range, found " + excerpt(p, fend);
    return nullptr;
  }
  if (r.ec != std::errc() || r.ptr != b) {
    err = "expected a number, found " + excerpt(p, fend);
    return nullptr;
  }
  if (!std::isfinite(value)) {
    err = "expected a finite number, found " + excerpt(p, fend);
    return nullptr;
  }
  return fend;
}

std::vector<std::string> split_fields(const char* p, const char* end, char delim) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (; p < end; ++p) {
    char c = *p;
    if (quoted) {
      if (c == '"') {
        if (p + 1 < end && p[1] == '"') {
          cur += '"';
          ++p;
        } else {
          quoted = false;
        }
      } else {
        cur += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == delim) {
      out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(std::move(cur));
  for (auto& f : out) {  // trim spaces around names
    size_t a = f.find_first_not_of(" \t");
    size_t b = f.find_last_not_of(" \t");
    f = (a == std::string::npos) ? std::string() : f.substr(a, b - a + 1);
  }
  return out;
}

bool looks_numeric(const std::string& field) {
  const char* a = field.data();
  const char* b = a + field.size();
  if (a < b && (*a == '+' || *a == '-')) ++a;
  if (a == b) return false;
  double v;
  auto r = std::from_chars(a, b, v);
  return (r.ec == std::errc() || r.ec == std::errc::result_out_of_range) && r.ptr == b;
}

}  // namespace wideann
