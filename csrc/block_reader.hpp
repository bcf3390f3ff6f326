// Reads one or more CSV files, in order, as blocks of whole lines.
//
// Each block is about block_size() bytes; a line longer than that gets a larger block. Blocks never
// span two files. The reader handles a UTF-8 BOM, detects (or is told about) a header line in each
// file, and checks that every file has the same number of columns. It is not thread-safe: the
// pipeline calls next() under its lock, so blocks come out in file order.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "common.hpp"
#include "tokenizer.hpp"

namespace wideann {

enum class HeaderMode { Auto, Yes, No };
HeaderMode parse_header_mode(const std::string& s);

// What a first line is to --header auto: a line of names is a header, a line of numbers a data row. It is
// unclear (the caller must be told which) where it may be either, and taking a data row for a header would
// lose it without a word: a field marks a missing value (NA, N/A, NULL, ?, ...: pandas' list and a few);
// its numbers are exactly their positions 0, 1, 2, ... (pandas' names of unnamed columns, or data?);
// names among numbers, unless the numbers are pandas' names 0, 1, ..., m-1 in the first m >= 2 columns
// (0, 1, y); names after an empty first one (pandas' header over its index). Empty fields say nothing else.
enum class FirstLine { Data, Header, Missing, Positions, Mixed, Index };  // (the last four: unclear, and why)
struct FirstLineGuess {
  FirstLine kind;
  size_t name;  // the first name's column, 0-based (the number of fields where there is none)
};
FirstLineGuess guess_first_line(const std::vector<std::string>& fields);

struct Block {
  std::vector<char> buf;  // lines in [0, size); the vector may be larger
  size_t size = 0;
  size_t file_index = 0;
  uint64_t offset = 0;  // file offset of buf[0]
};

class BlockReader {
 public:
  // Opens every input (so a missing one fails before any work) and reads the first file's first line.
  // `threads` sets the block size (see block_size()). `known`: headers the caller expects (the stats'
  // column names, say): under HeaderMode::Auto a first line as wide as one of them whose fields are all
  // their names is a header where a name is among them, whatever guess_first_line makes of it (numbers
  // and names, as a table of wideann's own output may carry), and unclear (refused) where they are all
  // numbers (names, or data?).
  BlockReader(const std::vector<std::string>& paths, HeaderMode mode, char delim, size_t threads = 1,
              std::vector<std::vector<std::string>> known = {});

  size_t n_columns() const { return n_columns_; }
  // Names from the first file's header, else x1 ... x{n-1}, y.
  const std::vector<std::string>& names() const { return names_; }
  bool first_file_has_header() const { return first_has_header_; }
  // "line N": where the first file's first line is (blank lines before it counted), for messages about it.
  const std::string& first_line() const { return first_line_; }
  uint64_t total_bytes() const { return total_bytes_; }
  const std::vector<std::string>& paths() const { return paths_; }
  // Input i as it was when opened (all are opened by the constructor).
  const FileIdentity& identity(size_t i) const { return files_[i]->identity(); }
  // Input i, open (all stay open until the reader is destroyed): where a RowError's line is counted.
  const InputFile& file(size_t i) const { return *files_[i]; }

  // Fills `b` with the next block of whole lines; false when all files are done. A file whose identity at
  // its end is not the one it had when opened (appended to, rewritten or replaced while it was read) is a
  // DataError: its blocks may mix two versions of it.
  bool next(Block& b);

 private:
  void open_next_file();
  // Whether the first line of the file being opened (its `fields`; `where`: "path, line N") is a header.
  bool is_header(const std::vector<std::string>& fields, const std::string& where) const;
  void fill_until_newline(size_t from);  // reads into carry_ until it holds a '\n' or the file ends
  size_t read_more(std::vector<char>& buf, size_t used, size_t want);

  std::vector<std::string> paths_;
  std::vector<std::unique_ptr<InputFile>> files_;
  HeaderMode mode_;
  std::vector<std::vector<std::string>> known_;
  std::unordered_set<std::string> known_names_;  // every name in known_
  std::unordered_set<std::string> first_names_;  // the first file's header names, if it has one
  char delim_;
  size_t block_size_;
  size_t n_columns_ = 0;
  std::vector<std::string> names_;
  bool first_has_header_ = false;
  std::string first_line_ = "line 1";
  uint64_t total_bytes_ = 0;

  // State of the file being read.
  size_t cur_ = 0;           // index of the current file; == paths_.size() when done
  bool open_ = false;
  bool eof_ = false;
  uint64_t read_pos_ = 0;    // file offset of the next byte to read
  std::vector<char> carry_;  // bytes read but not handed out yet
  uint64_t carry_offset_ = 0;
  bool file_has_rows_ = false;
  bool file_has_header_ = false;
};

// Calls row_fn(line_begin, line_end) for each non-blank line of a block ('\r' stripped), and turns a
// FieldError into a RowErrorException that knows where the line starts in its file. With one column,
// blank lines are rows too (an empty value, refused by the row's parser): skipped, a missing value would
// shift every later row against its record. (Blank lines at the end of a file never reach a block: the
// reader drops them.)
template <class RowFn>
inline void for_each_line(const Block& b, size_t n_columns, RowFn&& row_fn) {
  const char* p = b.buf.data();
  const char* end = p + b.size;
  while (p < end) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    const char* line_end = nl ? nl : end;
    const char* content_end = line_end_without_cr(p, line_end);
    if (content_end > p || n_columns == 1) {
      FieldError err;
      if (!row_fn(p, content_end, err))
        throw RowErrorException(RowError{b.file_index, b.offset + static_cast<uint64_t>(p - b.buf.data()),
                                         err.column, err.message});
    }
    p = line_end + 1;
  }
}

}  // namespace wideann
