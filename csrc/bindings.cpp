// pybind11 bindings: converts arguments, releases the GIL around each job, maps errors to Python.
// No logic lives here beyond that.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>

#include "engine.hpp"
#include "half.hpp"

namespace py = pybind11;
using namespace wideann;

namespace {

PyObject* data_error_type = nullptr;  // wideann._native.DataError

CsvOptions csv_options(const std::string& header, const std::string& delimiter, size_t threads) {
  if (delimiter.size() != 1) throw std::invalid_argument("delimiter must be one character");
  CsvOptions o;
  o.header = parse_header_mode(header);
  o.delimiter = delimiter[0];
  o.threads = threads;
  return o;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "wideann's C++ engine: streaming CSV statistics, min-max normalization and its inverse";

  py::register_exception<DataError>(m, "DataError", PyExc_ValueError);
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
          return d;
        },
        py::arg("paths"), py::arg("header"), py::arg("delimiter"), py::arg("threads"), py::arg("progress"));

  m.def("normalize",
        [](const std::vector<std::string>& paths, const std::string& output, const std::vector<double>& min,
           const std::vector<double>& max, const std::vector<std::string>& names, const std::string& dtype,
           const std::string& format, const std::string& header, const std::string& delimiter, size_t threads,
           bool clip, Progress& progress, const std::string& temporary) {
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
          py::gil_scoped_release release;
          return normalize(paths, output, min, max, names, opt, progress);
        },
        py::arg("paths"), py::arg("output"), py::arg("min"), py::arg("max"), py::arg("names"), py::arg("dtype"),
        py::arg("format"), py::arg("header"), py::arg("delimiter"), py::arg("threads"), py::arg("clip"),
        py::arg("progress"), py::arg("temporary") = std::string());

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

#ifdef WIDEANN_SANITIZED
  m.attr("sanitized") = true;  // built with -DWIDEANN_SANITIZE=ON (tests/fuzz/sanitized.py)
#else
  m.attr("sanitized") = false;
#endif

  m.def("half_conversion", &half_conversion,
        "How pass 2 converts to float16 here: 'f16c' (hardware) or 'software' (WIDEANN_HALF_CONVERSION=software)");

  m.def("block_size", &block_size, py::arg("threads") = 1,
        "Bytes of input a worker takes at a time (WIDEANN_BLOCK_SIZE overrides it)");
}
