// pybind11 bindings: converts arguments, releases the GIL around each job, maps errors to Python.
// No logic lives here beyond that.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <map>
#include <tuple>

#include "engine.hpp"
#include "half.hpp"

namespace py = pybind11;
using namespace wideann;

namespace {

PyObject* data_error_type = nullptr;  // wideann._native.DataError (wideann._data_error's)

// An input as pass 1 read it (InputSeen), as Python holds it: (device, inode, size, mtime_ns, rows).
using SeenTuple = std::tuple<uint64_t, uint64_t, uint64_t, int64_t, uint64_t>;

CsvOptions csv_options(const std::string& header, const std::string& delimiter, size_t threads) {
  if (delimiter.size() != 1) throw std::invalid_argument("delimiter must be one character");
  CsvOptions o;
  o.header = parse_header_mode(header);
  o.delimiter = delimiter[0];
  o.threads = threads;
  return o;
}

// The start of a writable, C-contiguous buffer of exactly `bytes` bytes of `item`-byte floats.
char* batch_buffer(py::buffer& b, size_t bytes, size_t item, const char* what) {
  py::buffer_info info = b.request(true);
  const char want = item == 2 ? 'e' : item == 4 ? 'f' : 'd';
  if (static_cast<size_t>(info.itemsize) != item || info.format.empty() || info.format.back() != want)
    throw std::invalid_argument(std::string(what) + " must hold the table's dtype (" + std::to_string(item) +
                                "-byte floats), got format '" + info.format + "'");
  py::ssize_t stride = info.itemsize;
  for (py::ssize_t d = info.ndim - 1; d >= 0; --d) {
    if (info.shape[d] > 1 && info.strides[d] != stride)
      throw std::invalid_argument(std::string(what) + " must be C-contiguous");
    stride *= info.shape[d];
  }
  if (static_cast<size_t>(info.size * info.itemsize) != bytes)
    throw std::invalid_argument(std::string(what) + " holds " + std::to_string(info.size * info.itemsize) +
                                " bytes, the batch needs " + std::to_string(bytes));
  return static_cast<char*>(info.ptr);
}

// The inputs and targets buffers of a batch of n rows of `r`'s table, checked: in the table's dtype, or
// float32 for a float16 table (then converted while reading).
struct BatchBuffers {
  char *x, *y;
  bool to_float32;
};
BatchBuffers batch_buffers(const BatchReader& r, size_t n, py::buffer& x, py::buffer& y) {
  const bool to_float32 = r.item_size() == 2 && x.request().itemsize == 4;
  const size_t item = to_float32 ? 4 : r.item_size();
  return {batch_buffer(x, n * (r.n_columns() - 1) * item, item, "x"), batch_buffer(y, n * item, item, "y"),
          to_float32};
}

}  // namespace

// The digest of the sources this engine is built from (source_digest.cpp, written by CMakeLists.txt at build time).
extern const char wideann_source_digest[];
extern const char wideann_source_manifest[];

PYBIND11_MODULE(_native, m) {
  m.doc() = "wideann's C++ engine: streaming CSV statistics, min-max normalization and its inverse";

  // wideann.DataError is a class of Python's (wideann/_data_error.py: its str() is one printable line, and it
  // carries the file's exact name), raised by the translator below for every DataError of the engine.
  m.attr("DataError") = py::module_::import("wideann._data_error").attr("DataError");
  data_error_type = m.attr("DataError").ptr();  // the module keeps it alive
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Cancelled&) {
      PyErr_SetNone(PyExc_KeyboardInterrupt);
    } catch (const DataError& e) {
      // Messages quote the input (file names, fields, header names), which may hold bytes that are not
      // UTF-8: those arrive as \xNN instead of failing the conversion to str.
      PyObject* msg = PyUnicode_DecodeUTF8(e.what(), static_cast<Py_ssize_t>(std::strlen(e.what())), "backslashreplace");
      if (msg == nullptr) return;  // MemoryError, already set
      PyErr_SetObject(data_error_type, msg);
      Py_DECREF(msg);
    }
  });

  py::class_<Progress>(m, "Progress", "Progress (bytes) and cancellation of a running job")
      .def(py::init<>())
      .def_property_readonly("total", [](const Progress& p) { return p.total.load(); })
      .def_property_readonly("done", [](const Progress& p) { return p.done.load(); })
      .def_property_readonly("cancelled", [](const Progress& p) { return p.cancelled.load(); })
      .def("cancel", [](Progress& p) { p.cancelled = true; });

  m.def("compute_stats",
        [](const std::vector<std::string>& paths, const std::string& header, const std::string& delimiter,
           size_t threads, Progress& progress) {
          CsvOptions opt = csv_options(header, delimiter, threads);
          ColumnStats s;
          {
            py::gil_scoped_release release;
            s = compute_stats(paths, opt, progress);
          }
          py::dict d;
          d["columns"] = s.names;
          d["min"] = s.min;  // lists: the caller needs no numpy for them
          d["max"] = s.max;
          d["n_rows"] = s.n_rows;
          py::list seen;  // each input as pass 1 read it, for normalize's `expect`
          for (const InputSeen& i : s.inputs)
            seen.append(py::make_tuple(i.file.device, i.file.inode, i.file.size, i.file.mtime_ns, i.rows));
          d["inputs"] = seen;
          return d;
        },
        py::arg("paths"), py::arg("header"), py::arg("delimiter"), py::arg("threads"), py::arg("progress"));

  m.def("normalize",
        [](const std::vector<std::string>& paths, const std::string& output, const std::vector<double>& min,
           const std::vector<double>& max, const std::vector<std::string>& names, const std::string& dtype,
           const std::string& format, const std::string& header, const std::string& delimiter, size_t threads,
           bool clip, Progress& progress, const std::string& temporary, const std::vector<SeenTuple>& expect) {
          NormalizeOptions opt;
          opt.csv = csv_options(header, delimiter, threads);
          if (dtype == "float32") opt.dtype = OutputDtype::Float32;
          else if (dtype == "float16") opt.dtype = OutputDtype::Float16;
          else throw std::invalid_argument("dtype must be float32 or float16");
          if (format == "npy") opt.format = OutputFormat::Npy;
          else if (format == "csv") opt.format = OutputFormat::Csv;
          else throw std::invalid_argument("format must be npy or csv");
          opt.clip = clip;
          opt.temporary = temporary;
          for (const SeenTuple& t : expect)
            opt.expect.push_back({{std::get<0>(t), std::get<1>(t), std::get<2>(t), std::get<3>(t)}, std::get<4>(t)});
          py::gil_scoped_release release;
          return normalize(paths, output, min, max, names, opt, progress);
        },
        py::arg("paths"), py::arg("output"), py::arg("min"), py::arg("max"), py::arg("names"), py::arg("dtype"),
        py::arg("format"), py::arg("header"), py::arg("delimiter"), py::arg("threads"), py::arg("clip"),
        py::arg("progress"), py::arg("temporary") = std::string(), py::arg("expect") = std::vector<SeenTuple>());

  m.def("denormalize",
        [](const std::string& input, const std::string& in_format, const std::string& output,
           const std::vector<double>& min, const std::vector<double>& max, const std::vector<std::string>& names,
           std::optional<std::vector<int64_t>> columns, const std::string& header, const std::string& delimiter,
           size_t threads, Progress& progress) {
          CsvOptions opt = csv_options(header, delimiter, threads);
          std::vector<int64_t> cols = columns.value_or(std::vector<int64_t>{});
          py::gil_scoped_release release;
          return denormalize(input, in_format == "npy", output, min, max, names, cols, opt, progress);
        },
        py::arg("input"), py::arg("in_format"), py::arg("output"), py::arg("min"), py::arg("max"), py::arg("names"),
        py::arg("columns"), py::arg("header"), py::arg("delimiter"), py::arg("threads"), py::arg("progress"));

  m.def("make_data",
        [](const std::string& output, uint64_t rows, size_t cols, uint64_t seed, double noise, size_t threads,
           Progress& progress) {
          py::gil_scoped_release release;
          make_data(output, rows, cols, seed, noise, threads, progress);
        },
        py::arg("output"), py::arg("rows"), py::arg("cols"), py::arg("seed"), py::arg("noise"), py::arg("threads"),
        py::arg("progress"));

  py::class_<BatchReader>(m, "BatchReader",
                          "Rows of a .npy table (one or several shards) read by several threads straight into "
                          "the caller's buffers: inputs into x, targets into y")
      .def(py::init([](const std::vector<std::tuple<int, std::string, uint64_t, uint64_t, uint64_t, int64_t>>& shards,
                       size_t n_columns, size_t item_size, size_t threads) {
             std::vector<NpyShardSpec> specs;
             for (const auto& [fd, path, offset, n_rows, size, mtime_ns] : shards)
               specs.push_back({fd, path, offset, n_rows, size, mtime_ns});
             return std::make_unique<BatchReader>(specs, n_columns, item_size, threads);
           }),
           py::arg("shards"), py::arg("n_columns"), py::arg("item_size"), py::arg("threads"),
           "shards: (fd, path, data offset, rows, file size, mtime_ns) per file, in table order")
      .def_property_readonly("n_rows", &BatchReader::n_rows)
      .def_property_readonly("threads", &BatchReader::threads)
      .def("read",
           [](BatchReader& r, py::array_t<int64_t, py::array::c_style | py::array::forcecast> rows, py::buffer x,
              py::buffer y, const std::vector<size_t>& batches) {
             const size_t n = static_cast<size_t>(rows.size());
             const BatchBuffers b = batch_buffers(r, n, x, y);
             const int64_t* rp = rows.data();
             py::gil_scoped_release release;
             r.read(rp, n, b.x, b.y, b.to_float32, batches);
           },
           py::arg("rows"), py::arg("x"), py::arg("y"), py::arg("batches") = std::vector<size_t>{},
           "Reads the rows (strictly increasing global numbers; with batches, the sizes of several batches one "
           "after the other, strictly increasing within each) into x (n x columns-1) and y (n x 1), in the "
           "table's dtype (or float32 buffers for a float16 table: converted while reading)");

  // The buffers of each batch in flight are held here (the C++ side has only their addresses) until the
  // batch is waited for or cancelled; the reader is kept alive as long as its read-ahead.
  struct PyReadAhead {
    explicit PyReadAhead(BatchReader& r) : reader(r), impl(r) {}
    BatchReader& reader;
    std::map<uint64_t, std::pair<py::object, py::object>> buffers;
    ReadAhead impl;  // declared last, destroyed first: its thread stops before the buffers are let go
  };
  py::class_<PyReadAhead>(m, "ReadAhead",
                          "Batches read ahead, in the order submitted, by a thread of their own (no Python "
                          "thread, no GIL) with a BatchReader")
      .def(py::init([](BatchReader& r) { return std::make_unique<PyReadAhead>(r); }), py::arg("reader"),
           py::keep_alive<1, 2>())
      .def("submit",
           [](PyReadAhead& a, py::array_t<int64_t, py::array::c_style | py::array::forcecast> rows, py::buffer x,
              py::buffer y, const std::vector<size_t>& batches) {
             const size_t n = static_cast<size_t>(rows.size());
             const BatchBuffers b = batch_buffers(a.reader, n, x, y);
             const uint64_t ticket = a.impl.submit(rows.data(), n, b.x, b.y, b.to_float32, batches);
             a.buffers.emplace(ticket, std::make_pair(py::object(x), py::object(y)));
             return ticket;
           },
           py::arg("rows"), py::arg("x"), py::arg("y"), py::arg("batches") = std::vector<size_t>{},
           "Queues the rows (as BatchReader.read: strictly increasing global numbers, or within each of "
           "batches) to be read into x and y; returns the ticket of the read")
      .def("wait",
           [](PyReadAhead& a, uint64_t ticket) {
             struct Drop {  // the buffers are let go whatever the outcome (with the GIL held again)
               PyReadAhead& a;
               uint64_t t;
               ~Drop() { a.buffers.erase(t); }
             } drop{a, ticket};
             py::gil_scoped_release release;
             a.impl.wait(ticket);
           },
           py::arg("ticket"), "Blocks (the GIL released) until the batch is read; raises its read error")
      .def("cancel",
           [](PyReadAhead& a) {
             {
               py::gil_scoped_release release;
               a.impl.cancel();
             }
             a.buffers.clear();
           },
           "Drops the batches not started and waits for the one being read")
      .def_property_readonly("queued", [](const PyReadAhead& a) { return a.impl.queued(); });

  // SHA-256 of SOURCE_MANIFEST, `sha256sum`'s lines for csrc/*.cpp, csrc/*.hpp and CMakeLists.txt as built: an
  // editable install's import compares it with the files on disk (wideann/_native_checked.py)
  m.attr("SOURCE_DIGEST") = py::str(wideann_source_digest);
  m.attr("SOURCE_MANIFEST") = py::str(wideann_source_manifest);

#ifdef WIDEANN_SANITIZED
  m.attr("sanitized") = true;  // built with -DWIDEANN_SANITIZE=ON (tests/fuzz/sanitized.py)
#else
  m.attr("sanitized") = false;
#endif

  m.def("half_conversion", &half_conversion,
        "How pass 2 converts to float16 here: 'f16c' (hardware) or 'software' (WIDEANN_HALF_CONVERSION=software)");

  m.def("split_fields",
        [](const std::string& line, const std::string& delimiter) {
          if (delimiter.size() != 1) throw std::invalid_argument("delimiter must be one character");
          return split_fields(line.data(), line.data() + line.size(), delimiter[0]);
        },
        py::arg("line"), py::arg("delimiter"),
        "The fields of one CSV line as the engine reads a header: quotes removed, spaces around them trimmed");

  m.def("guess_first_line",
        [](const std::vector<std::string>& fields) {
          const FirstLineGuess g = guess_first_line(fields);
          std::string kind = "unclear", why;
          switch (g.kind) {
            case FirstLine::Header: kind = "header"; break;
            case FirstLine::Data: kind = "data"; break;
            case FirstLine::Missing: why = "missing"; break;
            case FirstLine::Positions: why = "positions"; break;
            case FirstLine::Mixed: why = "mixed"; break;
            case FirstLine::Index: why = "index"; break;
          }
          return py::make_tuple(kind, g.name, why);
        },
        py::arg("fields"),
        "What --header auto makes of a first line's fields (trimmed, unquoted): ('header' | 'data' | 'unclear', "
        "the first name's column, 0-based, why it is unclear: 'missing' | 'positions' | 'mixed' | 'index' | '')");

  m.def("describe_row_error",
        [](const std::string& path, uint64_t line_offset, size_t column, const std::string& message,
           const std::tuple<uint64_t, uint64_t, uint64_t, int64_t>& read_as) {
          const InputFile f(path);
          const auto& [device, inode, size, mtime_ns] = read_as;
          return std::string(describe(RowError{0, line_offset, column, message}, f, {device, inode, size, mtime_ns}).what());
        },
        py::arg("path"), py::arg("line_offset"), py::arg("column"), py::arg("message"), py::arg("read_as"),
        "The message of a data error in the line at byte line_offset of path, as the engine gives it once the file "
        "it read as read_as ((device, inode, size, mtime_ns), as compute_stats' inputs give it) is open again");

  m.def("block_size", &block_size, py::arg("threads") = 1,
        "Bytes of input a worker takes at a time (WIDEANN_BLOCK_SIZE overrides it)");
}
