"""The Python face of the C++ engine: compute_stats, normalize, denormalize, make_data.

Each call runs the native job on a worker thread (the engine releases the GIL) while this thread
waits, draws the progress bar and turns Ctrl-C into a prompt, clean cancellation: the engine stops
within milliseconds and removes its temporary output, so nothing is left at the output path.
"""
from __future__ import annotations

import functools
import math
import os
import sys
import threading
from typing import Sequence, Union

from ._native_checked import _native
from ._atomic import (WRITTEN, commit_together, folder_of, kind_of, output_over_an_input, refuse_a_name_too_long,
                      refuse_a_write_protected_file, refuse_what_is_not_a_file, remove_listed, temp_name,
                      why_not_writable)
from ._entry import printable
from .diskspace import human_bytes, require_free
from .stats import Stats, wrong_stats_file_name

PathLike = Union[str, os.PathLike]

DataError = _native.DataError
"""Raised for bad input data; the message names the file, line and column (1-based). ``str(e)`` is one printable
line (a newline or a byte that is not UTF-8 in a file name as ``\\xNN``) and ``e.filename`` the exact name of the
file it is about: see :class:`wideann._data_error.DataError`, the engine's too."""

DTYPES = ("float32", "float16")


def _paths(inputs) -> list[str]:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [os.fspath(p) for p in inputs]
    if not paths:
        raise ValueError("no input files given")
    for p in paths:
        if os.path.isdir(p):
            raise DataError(f"{p}: is a folder, expected a CSV file", filename=p)
        if not os.path.exists(p):
            raise DataError(f"{p}: no such file", filename=p)
        # A FIFO, a pipe (<(zcat t.csv.gz)), a device: its first MiB read for the estimate of rows is gone for the
        # engine, which then waited forever for a writer that had left (Ctrl-C could not stop it), or failed
        # with "Illegal seek"; /dev/zero would be one endless line
        if not os.path.isfile(p):
            raise DataError(f"{p}: is {kind_of(p)}, expected a CSV file: inputs are read at offsets, and twice to "
                            "fit stats, which only a file allows; write it to a file first", filename=p)
        if not os.access(p, os.R_OK):
            raise DataError(f"{p}: cannot be read (permission denied)", filename=p)
    return paths


def _fsencode(paths: list[str]) -> list[bytes]:
    """File names as the engine takes them: bytes, so that a name that is not UTF-8 passes intact."""
    return [os.fsencode(p) for p in paths]


def _threads(threads) -> int:
    if threads is None or threads == 0:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if threads < 0:
        raise ValueError("threads must be >= 1")
    return int(threads)


def _check_output_folder(output: str) -> None:
    """Fail before any work (not after pass 1) when the output's folder is missing or may not be written in,
    when its name is longer than the folder takes, when a folder, a device or a FIFO is at the output path
    (:class:`NotAFileError`: the final rename would fail, or replace it), or when a write-protected file is
    there (a plain ``open()`` would not write it either)."""
    out_dir = folder_of(output)
    if not os.path.isdir(out_dir):
        raise DataError(f"{output}: output folder {os.path.normpath(out_dir)} does not exist", filename=output)
    if not os.access(out_dir, os.W_OK | os.X_OK):
        code, why = why_not_writable(out_dir)
        raise OSError(code, f"cannot write in its folder {os.path.normpath(out_dir)} ({why})", output)
    refuse_a_name_too_long(output)
    refuse_what_is_not_a_file(output)
    refuse_a_write_protected_file(output)


def table_and_stats_are_one(output, stats_path, option: str = "stats_out=") -> str | None:
    """What is wrong when ``normalize``'s table and the stats file it writes are one path; None when not.
    ``option`` names where the caller gives the stats file (the command line: ``--stats-out``)."""
    if stats_path is not None and os.path.abspath(stats_path) == os.path.abspath(output):
        return f"{os.fspath(stats_path)}: named for two outputs (the table and its stats file): name another {option}"
    return None


def _refuse_output_over_an_input(outputs, inputs, stats=None) -> None:
    """A ``ValueError`` (before any work) when an output is one of the inputs or the stats file read (the same
    file, by any name): writing it would destroy that input (the command line says so as wrong usage)."""
    read = list(inputs) + ([os.fspath(stats)] if isinstance(stats, (str, os.PathLike)) else [])
    clash = output_over_an_input(outputs, read)
    if clash:
        raise ValueError(clash)


def _check_delimiter(delimiter: str) -> str:
    if len(delimiter) != 1 or delimiter in '"\r\n' or ord(delimiter) > 127:
        raise ValueError(f"delimiter must be one ASCII character other than a quote or newline, got {delimiter!r}")
    if delimiter in "0123456789.+-eE":  # 1-2 and 1e5e3 would read as two numbers, or as one
        raise ValueError(f"delimiter {delimiter!r} can be part of a number; choose another (',', ';', a tab, ...)")
    return delimiter


def _check_header(header: str) -> str:
    if header not in ("auto", "yes", "no"):
        raise ValueError(f"header must be 'auto', 'yes' or 'no', got {header!r}")
    return header


def _run(fn, *args, progress: bool = False, desc: str = "", writes: str | None = None, reads=(), named=()):
    """Run a native job on a worker thread; show progress; cancel it cleanly on Ctrl-C. ``writes``: the output
    the job itself renames into place when done (denormalize, make-data), recorded in ``_atomic.WRITTEN``
    once it is, also when a Ctrl-C came too late to stop the job (the command then says it is complete).
    ``reads``: its CSV inputs, for :func:`_said_of_line_ends`; ``named``: every file it is given (its inputs and
    output), one of which a ``DataError`` of the job that names it carries as ``filename`` (:func:`_with_its_file`)."""
    prog = _native.Progress()
    box: dict = {}
    done = threading.Event()  # waited on instead of Thread.join, which an interrupt can leave broken
    gate = threading.Lock()  # decides, once, whether the job runs or was abandoned before it began
    state = {"running": False, "abandoned": False}

    def work():
        try:
            with gate:
                if state["abandoned"]:
                    return
                state["running"] = True
            box["result"] = fn(*args, prog)
        except BaseException as e:  # re-raised on the calling thread
            box["error"] = e
        finally:
            done.set()

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                   file=sys.stderr, leave=False, dynamic_ncols=True)
    try:
        # Inside the try: Ctrl-C can land while start() waits for the new thread to begin.
        threading.Thread(target=work, name="wideann-engine", daemon=True).start()
        while not done.wait(0.1):
            if bar is not None:
                bar.total = max(prog.total, 1)
                bar.n = prog.done
                bar.refresh()
        _record_written(writes, box)
    except BaseException:
        with gate:
            state["abandoned"] = True
            running = state["running"]
        if running:
            prog.cancel()  # the engine checks this before each block and stops within milliseconds
            _wait_uninterrupted(done)  # it removes its temporary output before it returns
            _record_written(writes, box)  # (finished before the cancel came: its output is in place)
        raise
    finally:
        if bar is not None:
            bar.close()
    if "error" in box:
        raise _with_its_file(_said_of_line_ends(box["error"], reads), named)
    return box.get("result")


def _said_of_line_ends(e: BaseException, paths) -> BaseException:
    """A data error in a CSV whose first line ends in a lone CR (classic Mac OS line ends, which the engine
    does not take: the whole file reads as one line, and the error said of it, such as "a header but no data
    rows", puzzles) is said so instead. Looked at only when the engine has refused a file."""
    if not isinstance(e, DataError):
        return e
    for p in paths:
        if _names(e, p) and (said := lone_cr_said(p)):
            return DataError(said, filename=p)
    return e


def _names(e: DataError, path: str) -> bool:
    """Whether the line of ``e`` is about the file ``path``: it starts with its name, as shown (``printable``), then
    ``:`` or ``,`` (``a.csv, line 3, ...``)."""
    shown, text = printable(path), str(e)
    return text.startswith(shown) and text[len(shown):len(shown) + 1] in (":", ",")


def _with_its_file(e: BaseException, paths) -> BaseException:
    """``e``, a ``DataError`` of the engine's, with ``filename`` the one of ``paths`` that its line names, if any
    (the engine's messages name the file; the exact name is the one the job was given)."""
    if isinstance(e, DataError) and e.filename is None:
        e.filename = next((p for p in paths if _names(e, p)), None)
    return e


def lone_cr_said(path: str) -> str | None:
    """The line that says a CSV's lines end in CR alone, or None when its first line does not
    (:func:`_first_line_ends_in_a_lone_cr`); ``wideann info`` says it too."""
    if not _first_line_ends_in_a_lone_cr(path):
        return None
    return (f"{path}: lines end in CR alone (classic Mac OS line ends), which are not supported: convert them to LF "
            "or CRLF first (for example tr '\\r' '\\n' < IN > OUT)")


def _first_line_ends_in_a_lone_cr(path: str, limit: int = 16 << 20) -> bool:
    """Whether the first line (after a BOM and the CRs and LFs before it, which the engine skips) ends in a CR
    that no LF follows. Reads in pieces, each looked at once, and gives up (False) after ``limit`` bytes."""
    try:
        with open(path, "rb") as f:
            chunk, leading, cr_last = f.read(1 << 16).removeprefix(b"\xef\xbb\xbf"), True, False
            while chunk and f.tell() <= limit:
                if cr_last:  # the piece before ended in the first line's CR
                    return not chunk.startswith(b"\n")
                if leading:
                    chunk = chunk.lstrip(b"\r\n")
                    leading = not chunk
                cr, lf = chunk.find(b"\r"), chunk.find(b"\n")
                if lf >= 0 and (cr < 0 or lf < cr):
                    return False
                if 0 <= cr < len(chunk) - 1:
                    return chunk[cr + 1:cr + 2] != b"\n"
                cr_last = cr >= 0
                chunk = f.read(1 << 16)
    except OSError:
        pass
    return False


BEYOND_FLOAT16 = "does not fit float16 (at most 65504)"
"""How the engine's message for a normalized value beyond float16 ends (``csrc/normalize.cpp``). What to do
about it is said by :func:`normalize` in the terms of its caller: :func:`float16_advice`."""

FLOAT32_IN_PYTHON = 'dtype="float32"'
FLOAT32_ON_THE_COMMAND_LINE = "--dtype float32"


def float16_advice(float32: str = FLOAT32_IN_PYTHON) -> str:
    """The advice :func:`normalize` appends to a value beyond float16: write the table in float32, ``float32``
    saying how where the caller is (:data:`FLOAT32_IN_PYTHON`, the keyword argument; the command line's
    option: :data:`FLOAT32_ON_THE_COMMAND_LINE`). The one place its text is written."""
    return f"; use {float32}"


def _advised(e: BaseException) -> BaseException:
    """The engine's error ``e``, when it refuses a value beyond float16, with :func:`float16_advice`."""
    if isinstance(e, DataError) and str(e).endswith(BEYOND_FLOAT16):
        return DataError(f"{e.args[0]}{float16_advice()}", filename=e.filename)
    return e


def float16_advice_reworded(e: DataError, said: str) -> DataError:
    """``e`` with :func:`normalize`'s advice for a value beyond float16 (in Python's terms) replaced by ``said``;
    ``e`` itself when it gives none."""
    advice = float16_advice()
    if not str(e).endswith(BEYOND_FLOAT16 + advice):
        return e
    return DataError(e.args[0][:-len(advice)] + said, filename=e.filename)


def in_the_training_dtype(e: DataError, trained_on: str) -> DataError:
    """``e`` with :func:`normalize`'s float16 advice replaced, for new data normalized in the dtype a model was
    trained on (``wideann predict``, a lesson's raw test CSV): there is no dtype to choose, and a value that
    does not fit lies far outside the range of the training data. ``trained_on``: what was trained on it."""
    return float16_advice_reworded(e, f": {trained_on}, and this value lies far outside the range of its training "
                                      "data; check that record")


def _record_written(output, box: dict) -> None:
    if output is not None and "result" in box and output not in WRITTEN:
        WRITTEN.append(output)


def _wait_uninterrupted(done: threading.Event) -> None:
    while True:
        try:
            if done.wait(0.1):
                return
        except KeyboardInterrupt:  # a second Ctrl-C: keep waiting, the job is already stopping
            continue


def compute_stats(inputs, *, header: str = "auto", delimiter: str = ",", threads=None,
                  progress: bool = False) -> Stats:
    """Pass 1 only: per-column min, max and row count of one or more CSV files (concatenated).

    Column names come from the header (``header="auto"`` detects one: a first line of names; one that
    mixes names and numbers other than their column positions is refused, see the README's formats), else
    they are ``x1 … x{n-1}, y``.
    """
    return _pass_one(_paths(inputs), header, delimiter, threads, progress)[0]


def _pass_one(paths: list[str], header: str, delimiter: str, threads, progress: bool) -> tuple[Stats, list]:
    """The stats of ``paths``, and each input as pass 1 read it (the engine's file identity and rows), which
    a fit's pass 2 is given to refuse an input that changed in between."""
    r = _run(_native.compute_stats, _fsencode(paths), _check_header(header), _check_delimiter(delimiter),
             _threads(threads), progress=progress, desc="stats", reads=paths, named=paths)
    return Stats(r["columns"], r["min"], r["max"], r["n_rows"], [os.path.abspath(p) for p in paths]), r["inputs"]


def default_stats_path(output: PathLike) -> str:
    """``t.npy`` -> ``t.stats.json`` (beside the output)."""
    root, _ext = os.path.splitext(os.fspath(output))
    return root + ".stats.json"


def _output_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        return "npy"
    if ext == ".csv":
        return "csv"
    raise ValueError(f"{path}: output must end in .npy or .csv")


def wrong_output_extension(command: str, output: str) -> str | None:
    """What is wrong with the name of ``command``'s output: ``normalize`` writes ``.npy`` or CSV as the name says,
    the others write CSV only (``make-data -o t.npy`` wrote CSV text into a file that says it is a ``.npy``)."""
    try:
        fmt = _output_format(os.fspath(output))
    except ValueError as e:
        if command == "normalize":
            return str(e)
        fmt = None
    if command != "normalize" and fmt != "csv":
        return f"{os.fspath(output)}: {command} writes CSV; name the output *.csv"
    return None


def normalize(inputs, output: PathLike, *, stats=None, stats_out=None, dtype: str = "float32",
              threads=None, header: str = "auto", delimiter: str = ",", clip: bool = False,
              progress: bool = False) -> Stats:
    """Min-max normalize CSV input(s) to ``output`` (``.npy`` or ``.csv``), streaming.

    Without ``stats`` the statistics are fitted on all inputs (pass 1) and saved to ``stats_out``
    (default: beside the output, ``t.npy`` -> ``t.stats.json``); with ``stats`` (a ``Stats`` or a
    path) they are applied as they are, e.g. to a test set (pass 2 only: nothing is fitted), and copied
    unchanged to ``stats_out`` only if given -- their min, max, row count and sources, those of the rows
    they were fitted on, as a fitted scikit-learn scaler is saved unchanged after ``transform``: a file
    with the applied min and max and these inputs' rows and sources would claim that these inputs range
    from min to max, and a later ``merge-stats`` or fit would take it at its word. Either way the stats
    file written is the stats the table was normalized with. A stats file already beside the output that
    describes another transform (left by an earlier run) is replaced by the new table's stats in either
    mode, even when they go to ``stats_out``: the lessons take it for the table's, and a table's stats
    file never lies.
    Values outside the fitted range stay outside [0, 1] unless ``clip``. Returns the stats used. A ``stats_out``
    named as a table (``.npy``, ``.csv``) is a ``ValueError``, before any work: a stats file is JSON.
    Nothing is left at ``output`` (or at the stats path) if anything fails. Fitting, an input that is not
    the file pass 1 read when pass 2 reads it (appended to, rewritten, replaced), or that gives pass 2 other
    rows, is a ``DataError``: the stats would not describe the table.
    """
    return normalize_counting_rows(inputs, output, stats=stats, stats_out=stats_out, dtype=dtype, threads=threads,
                                   header=header, delimiter=delimiter, clip=clip, progress=progress)[0]


def normalize_counting_rows(inputs, output: PathLike, *, stats=None, stats_out=None, dtype: str = "float32",
                            threads=None, header: str = "auto", delimiter: str = ",", clip: bool = False,
                            progress: bool = False) -> tuple[Stats, int]:
    """:func:`normalize`, returning also the number of data rows written (with ``stats``, these inputs' rows,
    not the rows the stats were fitted on): what ``wideann normalize`` says in its summary line."""
    paths = _paths(inputs)
    output = os.fspath(output)
    fmt = _output_format(output)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    header, delimiter, n_threads = _check_header(header), _check_delimiter(delimiter), _threads(threads)
    _check_output_folder(output)

    fitted = stats is None
    stats_path = default_stats_path(output) if fitted and stats_out is None else stats_out
    stats_path = None if stats_path is None else os.fspath(stats_path)
    clash = table_and_stats_are_one(output, stats_path)
    if clash:
        raise ValueError(clash)
    wrong = None if stats_out is None else wrong_stats_file_name(stats_path, "stats_out= is")
    if wrong:  # (as the command line's --stats-out)
        raise ValueError(wrong)
    if stats_path is not None:
        _check_output_folder(stats_path)  # now, not after both passes
    _refuse_output_over_an_input([output, stats_path], paths, stats)
    beside = default_stats_path(output)
    beside_too = stats_path is None or os.path.abspath(stats_path) != os.path.abspath(beside)

    # The table and its stats file are written under temporary names and renamed together at the end
    # (under a lock on their folders), so that a failure leaves neither and two runs writing the same
    # output end with one run's table and that run's stats, never a mix.
    table_tmp = stats_tmp = None
    seen: list = []  # a fit: each input as pass 1 read it; pass 2 refuses one that changed since
    made: list = []  # every temporary, listed before it is made (see temp_name), removed on any failure
    try:
        if fitted:
            st, seen = _pass_one(paths, header, delimiter, n_threads, progress)
            stats_tmp = temp_name(stats_path, made)  # written now: a missing or full stats folder fails before pass 2
            _save_stats(st, stats_tmp, stats_path)
            require_free(output, output_bytes(st.n_rows, st.columns, dtype, fmt), f"the table {output}",
                         mine=[stats_tmp])
        else:
            st = stats if isinstance(stats, Stats) else Stats.load(stats)
            if stats_path is not None:  # a copy of the applied stats, unchanged (not these inputs' rows); written
                stats_tmp = temp_name(stats_path, made)  # now, as a fit's: a missing stats folder fails before pass 2
                _save_stats(st, stats_tmp, stats_path)
            _require_estimated_space(output, paths, st.columns, dtype, fmt, mine=[stats_tmp] if stats_tmp else [])
        table_tmp = temp_name(output, made)
        try:
            rows = _run(functools.partial(_native.normalize, temporary=os.fsencode(table_tmp), expect=seen),
                 _fsencode(paths), os.fsencode(output), st._min, st._max, st.columns, dtype, fmt, header,
                 delimiter, n_threads, bool(clip), progress=progress, desc="normalize", reads=paths,
                 named=[*paths, output])
        except DataError as e:
            raise _advised(e) from None

        def stale_beside() -> list:
            """(Run under the commit's lock: another run may have put a stats file beside the output since this
            one began.) A stats file beside the output that describes another transform, replaced by the table's
            stats together with the table."""
            stale = _stale_stats_beside(output, st) if beside_too else None
            if stale is None:
                return []
            stale_tmp = temp_name(stale, made)
            _save_stats(st, stale_tmp, stale)
            return [(stale_tmp, stale)]

        commit_together([(table_tmp, output)] + ([(stats_tmp, stats_path)] if stats_tmp else []), more=stale_beside)
    except BaseException:
        remove_listed(made)
        raise
    return st, rows


def _stale_stats_beside(output: str, applied: Stats) -> str | None:
    """The stats file beside ``output`` (``t.npy`` -> ``t.stats.json``) when it describes another transform
    than the ``applied`` one (or cannot be read): it would be taken for the new table's stats, so it is
    replaced with the table's stats, together with the table. None when there is none, or when it
    describes the applied transform (it is left as it is)."""
    beside = default_stats_path(output)
    if not os.path.exists(beside) or not os.path.isfile(beside):  # (a folder of that name is no stats file)
        return None
    try:
        if Stats.load(beside).same_transform(applied):
            return None
    except (OSError, ValueError):
        pass
    return beside


def _save_stats(st: Stats, tmp: str, final: str) -> None:
    try:
        st.write(tmp)  # tmp is already the temporary name; renamed with the table
    except OSError as e:  # e.g. a full disk: name the stats file, not its temporary name
        raise OSError(e.errno, e.strerror or str(e), final) from None


def output_bytes(rows: int, columns: Sequence[str], dtype: str, fmt: str) -> int:
    """The size of ``normalize``'s output for ``rows`` rows: exact for ``.npy`` (header + rows x
    columns x itemsize); for CSV a lower bound (every value takes at least a digit and a comma or
    newline; the shortest float32 text of a value in [0, 1] usually takes about 11)."""
    cols = len(columns)
    if fmt == "npy":
        descr = "<f2" if dtype == "float16" else "<f4"
        # as csrc/writers.cpp's npy_header: room for a 20-digit row count, padded to 64 bytes
        text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': (, {cols}), }}"
        header = (10 + len(text) + 20 + 1 + 63) // 64 * 64
        return header + rows * cols * (2 if dtype == "float16" else 4)
    header = sum(len(c.encode()) + 1 for c in columns)
    return header + rows * cols * 2


def estimated_rows(paths: Sequence[str]) -> int:
    """About how many lines the inputs hold, from their sizes and the lines in their first MiB."""
    total = 0.0
    for p in paths:
        size = os.path.getsize(p)
        with open(p, "rb") as f:
            head = f.read(1 << 20)
        lines = head.count(b"\n")
        if len(head) == size:
            total += lines + (1 if head and not head.endswith(b"\n") else 0)
        elif lines:
            total += size * lines / (head.rfind(b"\n") + 1)
        else:
            total += 1  # a first line longer than a MiB
    return int(total)


def _require_estimated_space(output: str, paths, columns, dtype: str, fmt: str, mine=()) -> None:
    """Apply mode: the rows are not known before pass 2 writes them, so the size is estimated from
    the inputs' size; the run is refused only when not even half the estimate fits (a gross misfit,
    such as a table of 100 GB for 20 GB free). Pass 2 still fails cleanly if the disk fills."""
    estimate = output_bytes(estimated_rows(paths), columns, dtype, fmt)
    require_free(output, estimate // 2,
                 f"the table {output} (estimated at {human_bytes(estimate)} from the size of the input; "
                 f"at least half of that)", mine=mine)


def denormalize(input: PathLike, output: PathLike, *, stats, columns: Sequence | None = None,
                header: str = "auto", delimiter: str = ",", threads=None, progress: bool = False) -> int:
    """Turn normalized values (a ``.npy`` or CSV table) back into original units, as CSV.

    A one-column input is the target (the last column of the stats); an input with as many columns
    as the stats uses them all; otherwise name the stats column of each input column with
    ``columns`` (names or positions), e.g. ``columns=["y", "y"]`` for ``y_true, y_pred``. Without
    ``columns``, a CSV header that names another stats column than the one so taken is a ``DataError``
    (names that are no stats column's, such as ``y_pred``, are fine). Returns the number of rows written.
    """
    return denormalize_reading_columns(input, output, stats=stats, columns_of=lambda _st: columns, header=header,
                                       delimiter=delimiter, threads=threads, progress=progress)


def denormalize_reading_columns(input: PathLike, output: PathLike, *, stats, columns_of, header: str = "auto",
                                delimiter: str = ",", threads=None, progress: bool = False) -> int:
    """:func:`denormalize`, its ``columns`` given by ``columns_of(st)``, called with the stats once they are loaded:
    the command line reads ``--columns`` against their names (digits that also name a column) without loading the
    stats file a second time."""
    input, output = os.fspath(input), os.fspath(output)
    _paths([input])
    wrong = wrong_output_extension("denormalize", output)
    if wrong:
        raise ValueError(wrong)
    st = stats if isinstance(stats, Stats) else Stats.load(stats)
    columns = columns_of(st)
    in_fmt = "npy" if input.lower().endswith(".npy") else "csv"
    _check_output_folder(output)
    _refuse_output_over_an_input([output], [input], stats)
    try:
        idx = None if columns is None else st.column_indices(columns)
    except (ValueError, TypeError) as e:
        where = os.fspath(stats) if not isinstance(stats, Stats) else "stats"
        raise type(e)(f"{where}: {str(e).removeprefix('stats: ')}") from None
    return _run(_native.denormalize, os.fsencode(input), in_fmt, os.fsencode(output), st._min, st._max, st.columns,
                None if idx is None else [int(i) for i in idx], _check_header(header),
                _check_delimiter(delimiter), _threads(threads), progress=progress, desc="denormalize", writes=output,
                reads=[input] if in_fmt == "csv" else [], named=[input, output])


def make_data(output: PathLike, rows: int, cols: int, *, seed: int = 0, noise: float = 1.0,
              threads=None, progress: bool = False) -> None:
    """Write raw example data as CSV: ``cols - 1`` inputs and the target ``y`` last.

    ``y`` is Friedman #1 on the first five inputs, ``10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5``,
    plus Gaussian noise of standard deviation ``noise`` (so ``noise`` is the best RMSE any model can
    reach); the other inputs are pure noise. Inputs are drawn uniform in [0, 1] and then each put on
    its own scale and offset, which depend on the column alone (so files made with different seeds,
    e.g. a test set, share one distribution); ``y`` keeps Friedman's units. The same seed gives the
    same bytes, whatever the thread count.
    """
    output = os.fspath(output)
    wrong = wrong_output_extension("make-data", output)
    if wrong:
        raise ValueError(wrong)
    if cols < 6:
        raise ValueError("make-data needs at least 6 columns (5 Friedman inputs and y)")
    if rows < 1:
        raise ValueError("make-data needs at least 1 row")
    if not (noise >= 0 and math.isfinite(noise)):
        raise ValueError("noise must be a finite number >= 0")
    _check_output_folder(output)
    _run(_native.make_data, os.fsencode(output), int(rows), int(cols), int(seed), float(noise), _threads(threads),
         progress=progress, desc="make-data", writes=output, named=[output])
