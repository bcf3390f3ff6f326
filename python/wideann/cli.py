"""The ``wideann`` command line (also ``python -m wideann``).

Exit codes: 0 done; 2 wrong usage; 1 bad data or I/O failure, with one line on stderr that names the
file (and for data errors the 1-based line and column); 130 interrupted. Outputs are written under a
temporary name and renamed when complete, so a failed or interrupted run leaves nothing behind.
"""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import re
import sys

from . import __version__, _atomic, _entry
from ._entry import INTERRUPTED, counted, printable
from .engine import (FLOAT32_ON_THE_COMMAND_LINE, DataError, _check_output_folder, default_stats_path,
                     denormalize_reading_columns, float16_advice, float16_advice_reworded, make_data,
                     normalize_counting_rows, compute_stats, table_and_stats_are_one, wrong_output_extension)
from .interrupts import ignore_interrupts, stop_like_ctrl_c
from .stats import Stats, _first_difference, wrong_stats_file_name


def _delimiter(text: str) -> str:
    """``--delimiter``: one character (``\\t`` or ``tab`` for a tab) that cannot be part of a field; a wrong one
    is wrong usage (exit code 2)."""
    from .engine import _check_delimiter

    try:
        return _check_delimiter("\t" if text in ("\\t", "tab", "TAB") else text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_csv_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--header", choices=("auto", "yes", "no"), default="auto",
                   help="does each input start with a header line? (default: auto-detect)")
    p.add_argument("--delimiter", default=",", type=_delimiter,
                   help="field delimiter (default: ,); \\t or 'tab' for a tab")
    p.add_argument("--threads", type=_threads, default=0, help="worker threads (default: all cores)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


U64 = 2**64 - 1  # the engine's row counts and seeds are 64-bit unsigned
MAX_THREADS = 1024  # each worker holds a 4 MiB block or two: more threads than this is a typing mistake


def _whole_number(low: int, high: int, what: str = ""):
    """An argparse type: a whole number (ASCII digits) from ``low`` to ``high``; anything else is wrong usage
    (exit code 2, one line) rather than an error of the engine's bindings."""
    def parse(text: str) -> int:
        if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
            raise argparse.ArgumentTypeError(f"expected a whole number, found {text!r}")
        value = int(text)
        if not low <= value <= high:
            bound = f"at least {low}" if value < low else f"at most {high}"
            raise argparse.ArgumentTypeError(f"must be {bound}{what}, found {value}")
        return value
    parse.__name__ = "whole number"  # (argparse names the type in some messages)
    return parse


_threads = _whole_number(0, MAX_THREADS, " (0: all cores)")


def _noise(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, found {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, found {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="wideann", description="Streaming min-max normalization of wide "
                                 "numeric CSV tables, and back.")
    ap.add_argument("--version", action="version", version=f"wideann {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("stats", help="pass 1 only: per-column min, max, count -> stats JSON")
    p.add_argument("inputs", nargs="+", metavar="IN.csv")
    p.add_argument("-o", "--output", required=True, metavar="STATS.json")
    _add_csv_options(p)

    p = sub.add_parser("normalize", help="min-max normalize CSV(s) to [0,1] as .npy or .csv")
    p.add_argument("inputs", nargs="+", metavar="IN.csv")
    p.add_argument("-o", "--output", required=True, metavar="OUT.{npy,csv}")
    p.add_argument("--stats", metavar="STATS.json", help="apply these stats instead of fitting (test data; "
                   "pass 2 only); no stats file is written beside OUT then (one left there that describes "
                   "another transform is replaced by these): denormalize, or a lesson given OUT, takes these stats "
                   "with --stats (or --stats-out writes a copy)")
    p.add_argument("--stats-out", metavar="STATS.json",
                   help="where to write the stats OUT is normalized with: fitted stats (default: beside OUT, "
                        "t.npy -> t.stats.json); with --stats, a copy of those stats, unchanged (the rows they were "
                        "fitted on, not this input's; none by default)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="the normalized table's number type (default: float32; float16: half the bytes)")
    p.add_argument("--clip", action="store_true", help="clip values outside the fitted range to [0,1]")
    _add_csv_options(p)

    p = sub.add_parser("denormalize", help="normalized values (CSV or .npy) back to original units (CSV)")
    p.add_argument("input", metavar="IN.{csv,npy}")
    p.add_argument("-o", "--output", required=True, metavar="OUT.csv")
    p.add_argument("--stats", required=True, metavar="STATS.json",
                   help="the stats the input was normalized with: those normalize wrote beside the table it fitted "
                        "(t.npy -> t.stats.json), or those it applied (normalize --stats)")
    p.add_argument("--columns", nargs="+", metavar="COL",
                   help="stats column (name, or 0-based position; negative: from the end) of each input "
                        "column; default: a one-column input is the target, an input as wide as the stats "
                        "all columns in order")
    _add_csv_options(p)

    p = sub.add_parser("merge-stats", help="merge stats of shards exactly")
    p.add_argument("inputs", nargs="+", metavar="STATS.json")
    p.add_argument("-o", "--output", required=True, metavar="OUT.json")

    p = sub.add_parser("make-data", help="write raw example data (Friedman #1 target + noise inputs)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.csv")
    p.add_argument("--rows", type=_whole_number(1, U64), required=True)
    p.add_argument("--cols", type=_whole_number(6, U64, " (the 5 Friedman inputs and y)"), required=True,
                   help="columns in all, the target y included (at least 6: the 5 inputs of the target and y)")
    p.add_argument("--seed", type=_whole_number(0, U64), default=0, help="random seed, 0 to 2^64-1 (default: 0)")
    p.add_argument("--noise", type=_noise, default=1.0,
                   help="standard deviation of the noise on y, finite and >= 0 (default: 1.0)")
    p.add_argument("--threads", type=_threads, default=0, help="worker threads (default: all cores)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    p = sub.add_parser("info", help="describe a .npy table, a folder of .npy shards, a CSV file or a stats file")
    p.add_argument("path")

    p = sub.add_parser("predict", help="a trained lesson run applied to new raw data: predictions in original units",
                       description="Normalize NEW.csv with the run's training stats (C++ engine), run the run's "
                                   "model over it in batches, and write its predictions in the target's original "
                                   "units (C++ denormalizer) as OUT.csv: a column <target>_pred, one row per "
                                   "record of NEW.csv in order. NEW.csv holds the training table's columns, or "
                                   "its input columns only.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the lesson's run folder (runs/<lesson>: model.json, "
                   "its weights, stats.json)")
    p.add_argument("input", metavar="NEW.csv")
    p.add_argument("-o", "--output", required=True, metavar="OUT.csv")
    p.add_argument("--row-numbers", action="store_true",
                   help="write first a column 'row' with each record's 0-based number in NEW.csv (header "
                        "and blank lines not counted), to join the predictions back")
    p.add_argument("--batch-size", type=_positive_int, default=1024, help="rows per model call (default: 1024)")
    p.add_argument("--device", type=_device_name, help="where the model runs: cpu, cuda, cuda:1, mps (default: "
                                                      "cuda when there is a GPU, else cpu)")
    _add_csv_options(p)
    return ap


_positive_int = _whole_number(1, U64)


def _device_name(text: str) -> str:
    """``--device``: cpu, cuda, cuda:N or mps (N a whole number; what predict runs on). Anything else is wrong
    usage (exit 2): ``tpu``, ``cuda:x``, and torch's devices that hold no numbers or are not supported (meta,
    xla). Whether the device is there is the machine's answer (exit 1, from predict)."""
    if re.fullmatch(r"(cpu|mps)(:0)?|cuda(:[0-9]+)?", text, flags=re.ASCII) is None:
        raise argparse.ArgumentTypeError(f"{text!r}: predict runs on cpu, cuda, cuda:N or mps")
    return text


def _progress(args) -> bool:
    from .progress import shown  # (stderr a terminal; not a closed one)

    return shown(getattr(args, "quiet", True))


def say(line: str) -> None:
    """One line on stderr, its file names :func:`printable`. A stderr that cannot take it (``2>/dev/full``,
    closed) loses the line, not the work: the summary of a finished command does not turn it into a failure."""
    if sys.stderr is None:  # (print would write to stdout instead)
        return
    try:
        print(printable(line), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def is_a_position(text: str) -> bool:
    """Whether ``--columns`` reads ``text`` as a position: ASCII digits, with a leading ``-`` to count from the end
    (a ``²`` or an Arabic-Indic ``١`` is a name, not a number). The one place that rule is written (a lesson's
    ``wideann denormalize`` line gives a column name that reads as one by its position)."""
    return re.fullmatch(r"-?[0-9]+", text) is not None


def _columns_arg(cols, names: list[str], stats_path: str):
    """``--columns``, read against ``names``, the columns of the stats file ``stats_path``: positions
    (:func:`is_a_position`) and names. Digits that also name another column of the stats (columns named 350 ..
    2500, say) are refused: read as a position, they would give that other column's units."""
    if cols is None:
        return None
    out = [int(c) if is_a_position(c) else c for c in cols]
    if any(isinstance(c, int) for c in out):
        n = len(names)
        for text, c in zip(cols, out):
            if isinstance(c, int) and text in names and not (-n <= c < n and names[c] == text):
                other = f"; for position {c}, give {c - n}" if 0 <= c < n else ""
                raise ValueError(f"--columns {text}: digits are a 0-based position, but {text!r} is also the name "
                                 f"of column {names.index(text)} of {stats_path}: give its position "
                                 f"({names.index(text)}) if that column is meant{other}")
    return out


def _stats_at(path: str) -> Stats | None:
    """The stats file at ``path``, or None where there is none (nothing, something else): what normalize's line says
    of the file beside its output, read before normalize may replace it. Only a file is read: a FIFO there (which
    normalize replaces) would wait for a writer forever."""
    try:
        return Stats.load(path) if os.path.isfile(path) else None
    except (OSError, ValueError):
        return None


def _identity(path: str):
    """A file's (inode, size, modification time), or None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def run(args) -> None:
    cmd = args.command
    if cmd in ("stats", "merge-stats"):  # (the others' engine calls check their outputs before any work)
        _check_output_folder(args.output)
    if cmd == "stats":
        st = compute_stats(args.inputs, header=args.header, delimiter=args.delimiter,
                           threads=args.threads, progress=_progress(args))
        st.save(args.output)
        say(f"{counted(len(st.columns), 'column')}, {counted(st.n_rows, 'row')} -> {args.output}")
    elif cmd == "normalize":
        beside = default_stats_path(args.output)
        before, there = _identity(beside), _stats_at(beside)
        try:
            st, rows = normalize_counting_rows(args.inputs, args.output, stats=args.stats, stats_out=args.stats_out,
                                               dtype=args.dtype, threads=args.threads, header=args.header,
                                               delimiter=args.delimiter, clip=args.clip, progress=_progress(args))
        except DataError as e:  # (normalize's advice names its keyword argument: here, the option)
            raise float16_advice_reworded(e, float16_advice(FLOAT32_ON_THE_COMMAND_LINE)) from None
        asked = _stats_written(args)
        replaced = (asked is None or os.path.abspath(asked) != os.path.abspath(beside)) and before is not None \
            and _identity(beside) != before
        if args.stats:  # (none beside it is said: denormalize, or a lesson given the table, needs them named)
            said = (f"a copy of the applied stats: {args.stats_out}" if args.stats_out else
                    f"stats applied: {args.stats}" if replaced else _applied_and_beside(args.stats, beside, st, there))
        else:
            said = f"stats: {args.stats_out or beside}"
        if replaced:
            said += (f"; the stats file beside it, {beside}, described another transform: now this table's" if there
                     else f"; the file beside it, {beside}, was not a stats file: now this table's stats")
        # (the rows written: with --stats, not the stats')
        say(f"{counted(rows, 'row')} x {counted(st.n_columns, 'column')} -> {args.output} ({said})")
    elif cmd == "denormalize":
        n = denormalize_reading_columns(args.input, args.output, stats=args.stats,
                                        columns_of=lambda st: _columns_arg(args.columns, st.columns, args.stats),
                                        header=args.header, delimiter=args.delimiter, threads=args.threads,
                                        progress=_progress(args))
        say(f"{counted(n, 'row')} -> {args.output}")
    elif cmd == "merge-stats":
        parts = [Stats.load(p) for p in args.inputs]
        for path, st in zip(args.inputs[1:], parts[1:]):
            if st.columns != parts[0].columns:
                raise ValueError(f"{path}: columns differ from {args.inputs[0]}'s "
                                 f"{_first_difference(parts[0].columns, st.columns)}")
        _refuse_the_same_stats_twice(args.inputs, parts)
        merged = Stats.merge(parts)
        merged.save(args.output)
        say(f"{counted(len(args.inputs), 'stats file')}, {counted(merged.n_rows, 'row')} -> {args.output}")
    elif cmd == "make-data":
        make_data(args.output, args.rows, args.cols, seed=args.seed, noise=args.noise,
                  threads=args.threads, progress=_progress(args))
        say(f"{counted(args.rows, 'row')} x {counted(args.cols, 'column')} -> {args.output}")
    elif cmd == "info":
        from .info import describe

        if _entry.CLOSED_AT_START.get(1):  # (`>&-`: a description written nowhere is no description)
            raise OSError(errno.EBADF, "standard output is closed: nowhere to write the description", args.path)
        # each line printable (a file name that is not UTF-8, a newline in one), on a stdout whose encoding
        # cannot spell a name (Latin-1) escaped rather than failing (see _entry.escape_what_stdout_cannot_encode)
        text = "\n".join(printable(line) for line in describe(args.path).split("\n"))
        # one write, its newline included: print() writes the text, then the newline. Where stdout is unbuffered
        # (PYTHONUNBUFFERED=1, as many containers and CI set it) those were two writes, and `wideann info t.npy |
        # head -1` ended with 141 when head had its line and left before the newline came (0 or 141 by chance)
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except OSError as e:  # (`>/dev/full`: say where the write failed)
            if isinstance(e, BrokenPipeError):
                raise
            raise OSError(e.errno, e.strerror, "standard output") from None
    elif cmd == "predict":
        from .predict import predict  # imports torch: only this command needs it

        n = predict(args.run_dir, args.input, args.output, row_numbers=args.row_numbers,
                    batch_size=args.batch_size, device=args.device, header=args.header,
                    delimiter=args.delimiter, threads=args.threads, progress=_progress(args))
        say(f"{n} predictions -> {args.output}")


def _refuse_the_same_stats_twice(paths, parts) -> None:
    """merge-stats adds up rows: a stats file given twice (by any name), or a copy of one (the same
    numbers of the same source files), would count its rows twice.

    A copy is recognized by its ``sources`` (the absolute paths of the CSV files it was computed from, which
    ``wideann stats`` and ``normalize`` write). Two files that name no sources but hold the same numbers
    (written by hand or through the Python API) may be a copy, or two small shards that happen to agree
    (the same row count and the same min and max in every column): they are merged, with a warning on stderr
    (a line, not an error: nothing tells the two apart)."""
    for i in range(1, len(paths)):
        for j in range(i):
            if os.path.samefile(paths[i], paths[j]):
                raise ValueError(f"{paths[i]}: given twice (as {paths[j]} too): its rows would count twice")
            if parts[i].to_dict() != parts[j].to_dict():
                continue
            if parts[i].sources:
                raise ValueError(f"{paths[i]}: the same stats as {paths[j]} (the same numbers of the same source "
                                 "files): a copy; its rows would count twice")
            print(f"wideann: warning: {printable(paths[i])} holds the same numbers as {printable(paths[j])} and "
                  "neither names its sources: merged as two shards (if one is a copy, its rows count twice)",
                  file=sys.stderr)
    # a source file named by two stats files (overlapping shard lists, or one file counted again after it
    # grew): its rows count twice if it is the same file. A warning: the stats of shards computed on several
    # machines may name the same local path for different files
    named: dict = {}
    for path, st in zip(paths, parts):
        for src in dict.fromkeys(os.path.realpath(s) for s in st.sources):
            if src in named and named[src] != path:
                print(f"wideann: warning: {printable(path)} and {printable(named[src])} both name the source "
                      f"{printable(src)}: if it is the same file (not a file of the same path on another machine), "
                      "its rows count twice", file=sys.stderr)
            named.setdefault(src, path)


def _one_line(e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.filename and e.strerror:
        msg = f"{os.fsdecode(e.filename)}: {e.strerror}"
    return printable(msg)  # (a newline in a file name as \x0a, as the summary lines show it: one line, unambiguous)


def _applied_and_beside(applied: str, beside: str, st: Stats, there: Stats | None) -> str:
    """What ``normalize --stats`` (no ``--stats-out``) says of the stats: the file applied, and what is beside the
    table (``t.npy`` -> ``t.stats.json``), where it writes none: nothing, that very file, a stats file of the same
    transform (left as it is), or something else, named (a folder, say: left as it is too). ``there``: the stats
    file beside it as read before normalize (:func:`_stats_at`; not replaced, it is the same file)."""
    said = f"stats applied: {applied}"
    if not os.path.lexists(beside):
        return f"{said}; no stats file beside it"
    try:
        if os.path.samefile(applied, beside):
            return f"{said}, the stats file beside it"
    except OSError:
        pass
    if os.path.isdir(beside):
        return f"{said}; no stats file beside it: {beside} is a folder"
    if not os.path.isfile(beside):
        return f"{said}; no stats file beside it: {beside} is not a file"
    if there is not None and there.same_transform(st):
        return f"{said}; the stats file beside it, {beside}, describes the same transform"
    return f"{said}; none written beside it: {beside} there is not these stats"


def _stats_written(args) -> str | None:
    """The stats file ``normalize`` is asked to write: ``--stats-out``, else, when it fits stats (no ``--stats``),
    the one beside the output; None when it applies ``--stats`` without ``--stats-out``."""
    return args.stats_out or (None if args.stats else default_stats_path(args.output))


def _files_read_and_written(args) -> tuple[list, list]:
    """The files a command reads and the files it writes (those given, or written by default)."""
    cmd = args.command
    if cmd == "stats":
        return args.inputs, [args.output]
    if cmd == "normalize":
        return [*args.inputs, args.stats], [args.output, _stats_written(args)]
    if cmd == "denormalize":
        return [args.input, args.stats], [args.output]
    if cmd == "merge-stats":
        return args.inputs, [args.output]
    if cmd == "make-data":
        return [], [args.output]
    if cmd == "predict":  # the new data, and the run's model card, weights and stats
        from .modelcard import CARD_NAME, STATS_NAME

        own = [os.path.join(args.run_dir, CARD_NAME), os.path.join(args.run_dir, STATS_NAME)]
        try:
            with open(own[0]) as f:
                weights = json.load(f).get("weights")
            own.append(os.path.join(args.run_dir, weights) if isinstance(weights, str) else None)
        except (OSError, ValueError, AttributeError):
            pass  # (predict itself says what is wrong with the card)
        return [args.input, *own], [args.output]
    return [], []


def _output_over_an_input(args) -> str | None:
    """What is wrong when an output of the command is one of its inputs (the same file, by any name): it
    would be overwritten, and the input lost."""
    read, written = _files_read_and_written(args)
    return _atomic.output_over_an_input(written, read)


def _outputs_that_are_one(args) -> str | None:
    """What is wrong when two outputs of the command are one file (``normalize -o t.npy --stats-out t.npy``)."""
    if args.command != "normalize":
        return None
    return table_and_stats_are_one(args.output, _stats_written(args), "--stats-out")


def _wrong_output_extension(args) -> str | None:
    """What is wrong with the name of the command's table output (``.npy`` or ``.csv`` for normalize, ``.csv``
    for denormalize, make-data and predict), or of a stats file it writes (JSON: not named ``.npy`` or ``.csv``,
    which ``stats -o t.npy`` wrote JSON text into; nor ``-``, which says standard output to most commands and was
    a file named ``-`` here): a usage error, said before any work."""
    if args.command in ("stats", "merge-stats"):
        return wrong_stats_file_name(args.output, f"{args.command} writes")
    if args.command == "normalize" and args.stats_out:
        wrong = wrong_stats_file_name(args.stats_out, "--stats-out is")
        if wrong:
            return wrong
    if args.command not in ("normalize", "denormalize", "make-data", "predict"):
        return None
    return wrong_output_extension(args.command, args.output)


def _output_not_a_file(args) -> str | None:
    """What is wrong when an output path of the command is a folder, a device (``/dev/full``), a FIFO or a
    socket: the output would be renamed over it (or fail to be, after all the work)."""
    _read, written = _files_read_and_written(args)
    return next(filter(None, map(_atomic.what_is_not_a_file, filter(None, written))), None)


def _committed(args) -> str | None:
    """The command's output when it was renamed into place in this run (complete), else None."""
    if not getattr(args, "output", None):
        return None
    done = {os.path.abspath(p) for p in _atomic.WRITTEN}
    return args.output if os.path.abspath(args.output) in done else None


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    clash = (_output_over_an_input(args) or _outputs_that_are_one(args) or _output_not_a_file(args)
             or _wrong_output_extension(args))
    if clash:  # wrong usage: one line, exit code 2, nothing touched
        say(f"wideann: error: {clash}")
        return 2
    stop_like_ctrl_c()  # SIGTERM and SIGHUP: the engine is cancelled and temporary files are removed
    del _atomic.WRITTEN[:]
    global _RUNNING
    _RUNNING = args
    try:
        run(args)
        if _AS_THE_PROGRAM:  # the work is done: a signal as the interpreter shuts down (torch's takes a tenth of a
            ignore_interrupts()  # second) would end it with 130 or 143, or a traceback, after its summary line
    except KeyboardInterrupt:
        return interrupted()
    except BrokenPipeError:  # (`wideann info t.npy | head -1`: the reader has all it wanted)
        _entry.write_nowhere(1, "stdout")  # (no second error as Python flushes)
        return 141  # as a program ended by SIGPIPE
    except (DataError, OSError, ValueError) as e:
        say(f"wideann: error: {_one_line(e)}")
        return 1
    return 0


_AS_THE_PROGRAM = False

_RUNNING = None
"""The command :func:`main` is running (its parsed arguments), for :func:`interrupted`."""


def interrupted() -> int:
    """What the command says when Ctrl-C (SIGTERM, SIGHUP) stops it, and its exit code: 0 and that its output is
    complete when it was renamed into place in this run (too late to stop anything), else 130 and that no output
    was written. The program (:func:`console`) ignores interrupts from here on: it is ending, its temporary files
    are gone, and a second Ctrl-C (or a SIGTERM after the user's Ctrl-C) as this line is written would otherwise
    reach :mod:`wideann._entry`, which, knowing nothing of the output, said "no output written" and exit 130 for a
    complete output."""
    if _AS_THE_PROGRAM:
        ignore_interrupts()
    done = _committed(_RUNNING) if _RUNNING is not None else None
    if done:  # too late to stop anything: the output (and, for normalize, its stats) is complete
        say(f"wideann: interrupted after the work was done: {done} is complete")
        return 0
    say(INTERRUPTED)
    return 130


def console() -> None:
    """The ``wideann`` program (and ``python -m wideann``, both through :mod:`wideann._entry`): :func:`main`, whose
    interrupts after the work is done are ignored (as a function, :func:`main` leaves the process's signal handlers
    as they are)."""
    global _AS_THE_PROGRAM
    _AS_THE_PROGRAM = True
    sys.exit(main())


if __name__ == "__main__":
    console()
