#include "block_reader.hpp"

#include <algorithm>
#include <cstring>

#include "tokenizer.hpp"

namespace wideann {

HeaderMode parse_header_mode(const std::string& s) {
  if (s == "auto") return HeaderMode::Auto;
  if (s == "yes") return HeaderMode::Yes;
  if (s == "no") return HeaderMode::No;
  throw std::invalid_argument("header must be auto, yes or no");
}

namespace {

bool is_blank(const char* p, const char* end) {
  for (; p < end; ++p)
    if (*p != '\n' && *p != '\r') return false;
  return true;
}

std::vector<std::string> default_names(size_t n) {
  std::vector<std::string> names;
  for (size_t i = 1; i < n; ++i) names.push_back("x" + std::to_string(i));
  names.push_back("y");
  return names;
}

}  // namespace

BlockReader::BlockReader(const std::vector<std::string>& paths, HeaderMode mode, char delim, size_t threads,
                         std::vector<std::vector<std::string>> known)
    : paths_(paths), mode_(mode), known_(std::move(known)), delim_(delim), block_size_(block_size(threads)) {
  for (const auto& k : known_) known_names_.insert(k.begin(), k.end());
  if (paths_.empty()) throw DataError("no input files given");
  for (const auto& p : paths_) {
    files_.push_back(std::make_unique<InputFile>(p));
    total_bytes_ += files_.back()->size();
  }
  open_next_file();  // reads the header / first line of the first file and fixes the column count
}

size_t BlockReader::read_more(std::vector<char>& buf, size_t used, size_t want) {
  if (buf.size() < used + want + kReadPadding) buf.resize(used + want + kReadPadding);  // the tokenizer reads ahead
  const InputFile& f = *files_[cur_];
  size_t got = pread_fully(f.fd(), buf.data() + used, want, read_pos_, f.path());
  read_pos_ += got;
  if (got < want) eof_ = true;
  return got;
}

void BlockReader::fill_until_newline(size_t from) {
  size_t used = carry_.size();
  carry_.resize(used);
  while (!eof_) {
    // (memchr of nothing: an empty vector's data() may be null, which memchr must not be given)
    if (used > from && std::memchr(carry_.data() + from, '\n', used - from)) break;
    from = used;
    size_t want = std::max(block_size_, used);
    size_t got = read_more(carry_, used, want);
    used += got;
    carry_.resize(used);
  }
}

// How tables mark a missing value (pandas' default list, and ?, . and -): no name, no number. A first line
// with one is a data row with a value missing (refused as a value) or a header with an odd name: unclear.
static bool marks_missing(const std::string& f) {
  static const char* const marks[] = {"#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN",
                                      "<NA>", "N/A", "NA", "NULL", "None", "n/a", "null", "?", ".", "-"};
  return std::any_of(std::begin(marks), std::end(marks), [&](const char* m) { return f == m; });
}

FirstLineGuess guess_first_line(const std::vector<std::string>& fields) {
  for (size_t i = 0; i < fields.size(); ++i)
    if (marks_missing(fields[i])) return {FirstLine::Missing, i};
  size_t numbers = 0, name = fields.size();
  bool positions = true;  // every number is its own position, and comes before every name
  for (size_t i = 0; i < fields.size(); ++i) {
    const std::string& f = fields[i];
    if (f.empty()) continue;
    if (looks_numeric(f)) {
      ++numbers;
      positions = positions && name == fields.size() && f == std::to_string(i);
    } else if (name == fields.size()) {
      name = i;
    }
  }
  if (name == fields.size())  // numbers only: data, unless they are 0, 1, 2, ... (pandas' names, unrenamed)
    return {positions && numbers == fields.size() ? FirstLine::Positions : FirstLine::Data, name};
  // numbers and names: pandas' names with the last ones renamed (0, 1, ..., y), or a data row with a typo
  const bool pandas = positions && numbers >= 2;
  if (numbers && !pandas) return {FirstLine::Mixed, name};
  // names after an empty first one: pandas' header over its index (to_csv's default), whose row numbers
  // would be read as an input
  if (fields.size() > 1 && fields[0].empty() &&
      std::none_of(fields.begin() + 1, fields.end(), [](const std::string& f) { return f.empty(); }))
    return {FirstLine::Index, 0};
  return {FirstLine::Header, name};
}

bool BlockReader::is_header(const std::vector<std::string>& fields, const std::string& where) const {
  if (mode_ != HeaderMode::Auto) return mode_ == HeaderMode::Yes;
  auto unclear = [&](size_t column, const std::string& found) {
    return DataError(where + ", column " + std::to_string(column + 1) +
                     ": expected a header (names) or a data row (numbers), found " + found +
                     ": say which with --header yes or --header no");
  };
  const FirstLineGuess guess = guess_first_line(fields);
  const bool numbers_only = guess.name == fields.size();
  // the headers expected: the caller's, and in a later input the first input's (so that the stats pass and
  // the normalize pass, which is given the stats' names, decide alike)
  std::vector<const std::vector<std::string>*> known;
  for (const auto& k : known_) known.push_back(&k);
  if (cur_ > 0 && first_has_header_) known.push_back(&names_);
  // A line as wide as a header expected whose fields are all names of the columns: with a name in it, a
  // header (no data row holds a name; its order is checked where it is used); of numbers only, names or
  // data? (A one-column input's number among any of the stats' names: the target, or another column?)
  const auto named = [&](const std::string& f) {  // (sets: a line of 100k fields is looked up)
    return known_names_.count(f) > 0 || (cur_ > 0 && first_has_header_ && first_names_.count(f) > 0);
  };
  if (std::any_of(fields.begin(), fields.end(), [](const std::string& f) { return !f.empty(); }) &&
      std::any_of(known.begin(), known.end(), [&](const auto* k) { return k->size() == fields.size(); }) &&
      std::all_of(fields.begin(), fields.end(), [&](const std::string& f) { return f.empty() || named(f); })) {
    // (after a first input without a header, only the expected names in their order: nothing checks it later)
    const bool exact = std::any_of(known.begin(), known.end(), [&](const auto* k) { return *k == fields; });
    if (!numbers_only && (exact || cur_ == 0 || first_has_header_)) return true;
    if (numbers_only) throw unclear(0, "numbers that are all names of the columns (as the stats or the first input name them)");
  }
  switch (guess.kind) {
    case FirstLine::Positions:
      throw unclear(0, "the columns' positions 0, 1, 2, ... (pandas' names for unnamed columns, or data?)");
    case FirstLine::Index:
      throw DataError(where + ", column 1: expected a name, found none before " + excerpt(fields[1], 200) +
                      ", as pandas writes over a frame's index (to_csv without index=False): its row numbers "
                      "would be an input; write the CSV without the index, or say --header yes to keep that column");
    case FirstLine::Missing:
      throw unclear(guess.name, excerpt(fields[guess.name], 200) + " (a missing value, or a name?)");
    case FirstLine::Mixed:
      throw unclear(guess.name, excerpt(fields[guess.name], 200) + " among numbers");
    case FirstLine::Data:
    case FirstLine::Header:
      break;
  }
  // After a first input without a header, a later input's header names columns that the first input's
  // rows filled without names (nothing to check it against: its columns may be in another order), and a
  // line of names may as well be a data row with a typo (one column): refused, but for the names expected.
  if (guess.kind == FirstLine::Header && cur_ > 0 && !first_has_header_)
    throw DataError(where + ", column " + std::to_string(guess.name + 1) + ": expected a data row (" + paths_[0] +
                    " has no header), found " + excerpt(fields[guess.name], 200) +
                    ": give each input a header, or none (--header no)");
  return guess.kind == FirstLine::Header;
}

void BlockReader::open_next_file() {
  const std::string& path = paths_[cur_];
  open_ = true;
  eof_ = false;
  read_pos_ = 0;
  carry_.clear();
  carry_offset_ = 0;
  file_has_rows_ = false;
  file_has_header_ = false;

  fill_until_newline(0);
  size_t start = 0;
  if (carry_.size() >= 3 && std::memcmp(carry_.data(), "\xEF\xBB\xBF", 3) == 0) start = 3;  // UTF-8 BOM
  for (;;) {  // skip blank lines before the first line
    while (start < carry_.size() && (carry_[start] == '\n' || carry_[start] == '\r')) ++start;
    if (start < carry_.size()) break;
    if (eof_) throw DataError(path + ": empty file, expected a header or data rows");
    fill_until_newline(start);
  }
  // Make sure the whole first line is in memory.
  fill_until_newline(start);
  const char* line = carry_.data() + start;
  const char* nl = static_cast<const char*>(std::memchr(line, '\n', carry_.size() - start));
  const char* line_end = nl ? nl : carry_.data() + carry_.size();
  const char* content_end = line_end_without_cr(line, line_end);
  std::vector<std::string> fields = split_fields(line, content_end, delim_);

  // the first line's number (blank lines before it count, as they do for the data rows' numbers)
  const std::string line_no = "line " + std::to_string(1 + std::count(carry_.begin(), carry_.begin() + start, '\n'));
  const std::string where = path + ", " + line_no;
  const bool header = is_header(fields, where);
  if (cur_ == 0) first_line_ = line_no;
  file_has_header_ = header;
  if (header) {  // names become Python strings and JSON text: they must be UTF-8
    for (size_t i = 0; i < fields.size(); ++i)
      if (!is_valid_utf8(fields[i]))
        throw DataError(where + ", column " + std::to_string(i + 1) +
                        ": expected a column name in UTF-8 text, found " + excerpt(fields[i], 200));
  }
  if (cur_ == 0) {
    n_columns_ = fields.size();
    first_has_header_ = header;
    names_ = header ? fields : default_names(n_columns_);
    if (header) {
      for (size_t i = 0; i < names_.size(); ++i)
        if (names_[i].empty()) names_[i] = "column" + std::to_string(i + 1);
      first_names_.insert(names_.begin(), names_.end());
    }
  } else if (fields.size() != n_columns_) {
    throw DataError(where + ": expected " + std::to_string(n_columns_) + " fields (as in " +
                    paths_[0] + "), found " + std::to_string(fields.size()));
  } else if (header && first_has_header_) {
    for (size_t i = 0; i < fields.size(); ++i) {
      if (fields[i] != names_[i] && !(fields[i].empty() && names_[i] == "column" + std::to_string(i + 1)))
        throw DataError(where + ", column " + std::to_string(i + 1) + ": expected header " +
                        excerpt(names_[i], 200) + " (as in " + paths_[0] + "), found " + excerpt(fields[i], 200));
    }
  }
  if (header) start = static_cast<size_t>(line_end - carry_.data()) + (nl ? 1 : 0);
  carry_.erase(carry_.begin(), carry_.begin() + static_cast<std::ptrdiff_t>(start));
  carry_offset_ = start;
}

bool BlockReader::next(Block& b) {
  while (cur_ < paths_.size()) {
    if (!open_) open_next_file();
    // Start the block with the carried-over bytes, then read up to a block's worth more.
    size_t used = carry_.size();
    if (b.buf.size() < used + kReadPadding) b.buf.resize(used + kReadPadding);
    if (used) std::memcpy(b.buf.data(), carry_.data(), used);
    uint64_t offset = carry_offset_;
    carry_.clear();
    size_t cut = 0;
    for (;;) {
      if (!eof_) used += read_more(b.buf, used, std::max(block_size_, used));
      const char* base = b.buf.data();
      const char* last_nl = nullptr;
      for (const char* p = base + used; p > base;) {  // the last newline
        --p;
        if (*p == '\n') {
          last_nl = p;
          break;
        }
      }
      if (last_nl) {
        cut = static_cast<size_t>(last_nl - base) + 1;
      } else if (eof_) {  // last line without a final newline
        cut = used;
      } else {
        continue;  // one line longer than the block: read more into the same block
      }
      if (n_columns_ != 1) break;
      // One column: a blank line between rows is a row (an empty value, refused), but blank lines at the
      // end of the file are not. So a block never ends in blank lines unless its file ends there: they
      // wait in the carry until more text comes (rows) or the file ends (dropped).
      const size_t end = eof_ ? used : cut;
      size_t t = end;
      while (t > 0 && (base[t - 1] == '\n' || base[t - 1] == '\r')) --t;  // past the last row's text
      const char* nl_after = static_cast<const char*>(std::memchr(base + t, '\n', end - t));
      const size_t tail = t == 0 ? 0 : (nl_after ? static_cast<size_t>(nl_after - base) + 1 : end);
      if (tail >= end) break;  // no blank line after the last row
      if (eof_) {
        cut = used = tail;  // the end of the file: dropped
        break;
      }
      if (tail > 0) {
        cut = tail;  // they wait in the carry
        break;
      }
      // Only blank lines so far, and more to read: keep the first (the row to refuse, should text follow:
      // its error is the earliest, so the offsets after it need not hold) and the unfinished line after
      // them, drop the others (memory stays bounded however many there are), and read on.
      const size_t keep = static_cast<size_t>(static_cast<const char*>(std::memchr(base, '\n', cut)) - base) + 1;
      if (keep < cut) {
        std::memmove(b.buf.data() + keep, b.buf.data() + cut, used - cut);
        used -= cut - keep;
      }
    }
    carry_.assign(b.buf.data() + cut, b.buf.data() + used);
    carry_offset_ = offset + cut;
    if (cut == 0) {  // this file is done
      const std::string& path = paths_[cur_];
      const InputFile& f = *files_[cur_];
      const FileIdentity& then = f.identity();
      const FileIdentity now = f.identity_now();
      if (now != then || read_pos_ != then.size)
        throw DataError(path + ": changed while it was being read (" +
                        (now != then ? identity_change(then, now, "when opened")
                                     : std::to_string(then.size) + " bytes when opened, " + std::to_string(read_pos_) + " read") +
                        "); run again once it no longer changes");
      if (!file_has_rows_)
        throw DataError(path + (file_has_header_ ? ": has a header but no data rows" : ": empty file, expected data rows"));
      open_ = false;
      ++cur_;
      continue;
    }
    if (!file_has_rows_ && !is_blank(b.buf.data(), b.buf.data() + cut)) file_has_rows_ = true;
    b.size = cut;
    b.file_index = cur_;
    b.offset = offset;
    return true;
  }
  return false;
}

}  // namespace wideann
