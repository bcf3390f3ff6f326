"""The table a lesson trains on (:func:`prepare_data`).

With no ``--data`` it takes the shipped example CSV (``data/example.csv``) and normalizes it with the C++
engine into the run folder, printing the ``wideann normalize`` command it ran; CSV files given with
``--data`` / ``--test-data`` are handled the same way; ``.npy`` tables (one file, several shards or a
folder of them) are used as they are, with their stats file (beside them, or ``--stats``), after
checking that the shards agree.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .._entry import counted
from .._exact_names import exact_fields, spell_fields
from ..diskspace import human_bytes
from ..engine import DataError, default_stats_path, in_the_training_dtype, normalize
from ..modelcard import table_dtype
from ..stats import Stats
from .errors import LessonError, UsageError, ours, shown
from .processes import in_turn, settle


EXAMPLE_NAME = "example.csv"


def example_csv() -> Path:
    """The shipped example data: ``data/example.csv`` of the source tree."""
    candidates = []
    if os.environ.get("WIDEANN_EXAMPLE_DATA"):
        candidates.append(Path(os.environ["WIDEANN_EXAMPLE_DATA"]))
    if sys.argv and sys.argv[0]:
        candidates.append(Path(sys.argv[0]).resolve().parent.parent / "data" / EXAMPLE_NAME)
    candidates.append(Path.cwd() / "data" / EXAMPLE_NAME)
    candidates.append(Path(__file__).resolve().parents[3] / "data" / EXAMPLE_NAME)
    for c in candidates:
        if c.is_file():
            return c
    raise LessonError("the example data data/example.csv was not found: run from the wideann source tree, "
                      "or pass --data")


def shell_path(p, *, stream=None) -> str:
    """A file name as the lessons' lines show it (relative to the working folder unless that takes ``../..``),
    quoted for bash, so that a command line they print can be copied and run: ``shlex.quote`` for most names.
    A name with a control character (a newline), a byte that is not UTF-8 or a character that the encoding of
    ``stream``, the stream the line is written to, cannot spell (or spells with other bytes than the file
    system's) is written in bash's ANSI-C quoting,
    ``$'...'``, with each of those as the ``\\xNN`` of its bytes (as the project shows such names:
    :func:`~wideann._entry.printable`): the line stays one line, and bash reads it back as the same bytes.
    (``shlex.quote`` put the newline itself in the line, the byte raw.) A character that is not printable by
    :meth:`str.isprintable` is one of those too: a zero-width space (U+200B), a direction mark or override (U+202E
    shows the rest of the line reversed), a no-break space: shown raw, the line would show another name than the
    one it holds. A relative name that starts with ``-`` gets ``./`` before it: as it is, the command it ends up
    in would read it as an option. ``stream`` is ``sys.stdout`` (the lessons' informational lines) unless given:
    a hint in an error line, written to ``sys.stderr``, passes that (its encoding may differ: ``2>log`` under
    another locale, a stderr reconfigured)."""
    p = os.fspath(p)
    try:
        rel = os.path.relpath(p)
        p = rel if not rel.startswith(os.pardir + os.sep + os.pardir) else p
    except ValueError:
        pass
    if p.startswith("-"):
        p = os.curdir + os.sep + p
    return shell_word(p, stream=stream)


def shell_word(text: str, *, stream=None) -> str:
    """``text`` as one word of a command line the lessons print, quoted as :func:`shell_path` quotes a file name
    (for a word that is not one: a column name after ``--columns``) for ``stream`` (``sys.stdout`` unless given)."""
    encoding = getattr(sys.stdout if stream is None else stream, "encoding", None) or "utf-8"
    if all(_plain(c, encoding) for c in text):
        return shlex.quote(text)
    return "$'" + "".join(("\\" + c if c in "\\'" else c) if _plain(c, encoding) else _bytes_escaped(c)
                          for c in text) + "'"


def _plain(c: str, encoding: str) -> bool:
    """``c`` shown as it is in a line of a lesson: printable (no control character, line or paragraph separator,
    format character such as U+200B or U+202E, blank other than the space, nor a byte that is not UTF-8: a
    surrogate), and one that the stream's encoding spells as the file name's bytes (what a terminal pastes is what it
    shows)."""
    if not c.isprintable():
        return False
    try:
        return c.encode(encoding) == os.fsencode(c)
    except (UnicodeError, LookupError):
        return False


def _bytes_escaped(c: str) -> str:
    """``c``'s bytes in the file name as bash's ``$'...'`` spells them: ``\\xNN`` each."""
    try:
        b = os.fsencode(c)
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte (no file system name holds one)
        b = c.encode("utf-8", "surrogatepass")
    return "".join(f"\\x{n:02x}" for n in b)


def _is_up_to_date(out: Path, sources: list[Path]) -> bool:
    return out.is_file() and all(out.stat().st_mtime >= s.stat().st_mtime for s in sources)


def _normalize_csv(csvs: list[Path], folder: Path, stats: Path | None, say,
                   dtype: str = "float32") -> tuple[Path, Path]:
    """CSV file(s) -> ``folder/<name>.npy`` with the engine (fitting stats unless ``stats`` is given), in
    ``dtype`` (a test CSV in the training table's, :func:`wideann.modelcard.table_dtype`: the model is tested
    on numbers rounded as it was trained on them, and as ``wideann predict`` rounds new data for it).

    Several CSV files are one table (concatenated in order, as ``wideann normalize a.csv b.csv`` does);
    the output is named after the first, with ``+N`` for the others."""
    name = csvs[0].stem + (f"+{len(csvs) - 1}" if len(csvs) > 1 else "")
    out = folder / (name + ".npy")
    st_path = Path(stats) if stats else Path(default_stats_path(out))
    deps = list(csvs) + ([Path(stats)] if stats else [])
    if (_is_up_to_date(out, deps) and st_path.is_file() and _sources_match(out, csvs, stats)
            and table_dtype(out) == dtype):
        say(f"using {shell_path(out)} (normalized from {' '.join(shell_path(c) for c in csvs)} earlier)")
        return out, st_path
    from .runlock import make_folder

    make_folder(folder)  # (removed if the run is refused before its work and left it empty: course.run)
    cmd = ["wideann", "normalize", *(shell_path(c) for c in csvs), "-o", shell_path(out)]
    if stats:
        cmd += ["--stats", shell_path(stats)]
    if dtype != "float32":
        cmd += ["--dtype", dtype]
    say("normalizing with the C++ engine:  " + " ".join(cmd))
    _sources_file(out).unlink(missing_ok=True)  # written again only once the new table is complete
    key = _sources_key(csvs, stats)  # (taken before: a file changed while it is read is read again next time)
    try:
        normalize(csvs, out, stats=stats, dtype=dtype)
    except DataError as e:  # (normalize's advice names an option the lessons do not have)
        raise in_the_training_dtype(e, f"the training table is {dtype}") from None
    _sources_file(out).write_text(json.dumps(spell_fields({"sources": key}, _EXACT_NAMES)) + "\n")
    return out, st_path


def _sources_file(out: Path) -> Path:
    """Beside a table a lesson normalized: what it was made from (:func:`_sources_key`), as ``{"sources": [...]}``,
    with ``"source_bytes"`` when a file name is not UTF-8 (:mod:`wideann._exact_names`; a file written before
    2026-11-28 is the bare list, read as well)."""
    return out.with_name(out.name + ".sources.json")


_EXACT_NAMES = {"sources": "source_bytes"}


def _sources_key(csvs, stats) -> list:
    """Each file a table is made from, as ``[path, size, modification time (ns), inode]``: a file replaced
    by another of the same name differs in one of them, even one with an older time (``mv``, ``cp -p``,
    ``rsync -a``, a download that keeps the server's time, a link pointed at another file)."""
    key = []
    for f in list(csvs) + ([stats] if stats else []):
        st = os.stat(f)
        key.append([os.path.abspath(f), st.st_size, st.st_mtime_ns, st.st_ino])
    return key


def _sources_match(out: Path, csvs, stats) -> bool:
    """The table in the run folder was made from exactly these files, as they are now (not from others of
    the same name, nor from these before they were changed or replaced)."""
    try:
        made_from = json.loads(_sources_file(out).read_text())
        if isinstance(made_from, dict):  # (a bare list: written before 2026-11-28)
            made_from = exact_fields(made_from, _EXACT_NAMES).get("sources")
        return made_from == _sources_key(csvs, stats)
    except (OSError, ValueError):
        return False


def _table_files(option: str, given, default=None) -> tuple[str, list[Path]]:
    """``("npy", shards)`` or ``("csv", files)`` for the paths given to ``option``; a folder means its .npy
    files. A mix of .npy tables and CSV files is refused."""
    if isinstance(given, (str, os.PathLike)):  # one path given by a caller other than the parser
        given = [given]
    items = [Path(p) for p in given] if given else [default]
    for p in items:
        if not p.exists():
            raise LessonError(f"{option} {shown(p)}: no such file")
        if p.is_dir() and not any(q.suffix.lower() == ".npy" and q.is_file() for q in p.iterdir()):
            raise LessonError(f"{option} {shown(p)}: is a folder without .npy tables; give .npy tables (files, or a "
                              "folder of shards) or raw CSV files")
    csvs = [p for p in items if p.is_file() and p.suffix.lower() != ".npy"]
    if csvs and len(csvs) != len(items):
        raise UsageError(f"{option}: give .npy tables (files or folders) or raw CSV files, not both")
    if csvs:
        return "csv", csvs
    return "npy", _data_call(data_pkg().table_paths, items, option=option)


def data_pkg():
    from .. import data

    return data


def _data_call(fn, *args, option: str = "", **kw):
    """A call into wideann.data whose data errors are the user's: one line (after ``option``, the option
    that named the table), exit 1."""
    try:
        return fn(*args, **kw)
    except (DataError, ValueError) as e:  # DataError is a ValueError; both name the file
        raise LessonError(f"{option} {ours(e)}" if option else ours(e)) from None


def prepare_data(args, accelerator=None) -> SimpleNamespace:
    """Resolve ``--data`` / ``--test-data`` / ``--stats`` into normalized tables.

    Returns a namespace with ``train`` (the list of ``.npy`` shard paths of the training table: one for
    a single file), ``test`` (the test table's shard paths, or None), ``stats_path`` and ``stats``
    (:class:`wideann.Stats`). Shards that disagree with each other (columns, dtype, stats file) or a test
    table whose columns differ from the training table's raise :class:`LessonError` naming the odd file.
    With several processes the main one normalizes and the others wait for it. Before anything else, the
    main process makes the run folder (``--output-dir``) and refuses one it may not write in, or a
    write-protected file among those the run replaces at its end (see
    :func:`~wideann.course.results.refuse_a_run_folder_that_may_not_be_written`), or one where another run is
    writing (:func:`~wideann.course.runlock.hold_the_run_folder`: it holds it to its end). Once it holds it, the
    temporary files of its files that killed writes left there go
    (:func:`~wideann.course.runlock.remove_what_killed_writes_left`), in one line if there were any.
    """
    from .results import WRITTEN_AT_THE_END, refuse_a_run_folder_that_may_not_be_written, tensorboard_folder
    from .runlock import hold_the_run_folder, make_folder, remove_what_killed_writes_left

    main = accelerator is None or accelerator.is_main_process
    say = print if main else (lambda *a, **k: None)
    out_dir = Path(args.output_dir)
    error = None
    if main:  # the run folder, and what the run replaces at its end, checked before any work (the main process
        try:  # alone writes them; the others learn that it failed, and it alone says why)
            make_folder(out_dir)  # (a run refused before its work removes the folders it made: course.run)
            refuse_a_run_folder_that_may_not_be_written(out_dir, args)
            if hold_the_run_folder(out_dir):  # one run at a time in it, to the end of this one
                _say_removed(remove_what_killed_writes_left(out_dir, WRITTEN_AT_THE_END), out_dir, say)
            curves = tensorboard_folder(out_dir, args)
            if curves is not None:  # and in the folder of its curves, which another run could take for its run folder
                make_folder(curves)
                hold_the_run_folder(curves, "the folder of the TensorBoard curves")
        except Exception as e:  # noqa: BLE001 - raised again by settle, on every process
            error = e
    settle(accelerator, error)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = out_dir / "data"
    data = data_pkg()

    def work():
        kind, found = _table_files("--data", args.data, None if args.data else example_csv())
        test_kind, test_found = _table_files("--test-data", args.test_data) if args.test_data else (None, None)
        if test_found:
            _refuse_shared_files(found, test_found)
        if args.stats:
            _require_file(Path(args.stats), "--stats")
        stats = None  # known to fit the table, once wideann.data has checked it
        if kind == "npy":
            train = found
            if args.stats:  # the plainest mistake first, said of the file it is about
                _refuse_stats_of_another_width(Path(args.stats), train)
            stats_path, stats = _data_call(data.table_stats, train, args.stats, option="--data")
        else:
            if not args.data:
                say(f"no --data given: using the example data {shell_path(found[0])}")
            table, stats_path = _normalize_csv(found, data_dir, args.stats, say)
            train = [table]
        test = None
        if test_found:
            test = test_found if test_kind == "npy" else [_normalize_csv(test_found, data_dir / "test", stats_path,
                                                                         say, table_dtype(train))[0]]
        return train, test, stats_path, _check_tables(train, test, stats_path, stats)

    # one process per machine normalizes; the others then find its files up to date
    train, test, stats_path, stats = in_turn(accelerator, work)
    return SimpleNamespace(train=train, test=test, stats_path=stats_path, stats=stats)


def _say_removed(removed: list, out_dir: Path, say) -> None:
    """One line for the temporary files a run removed as it started, naming their folder (the run folder, when
    they were in several), as :func:`~wideann.course.results.clear_results` says what it removed."""
    if not removed:
        return
    folders = {p.parent for p, _ in removed}
    where = folders.pop() if len(folders) == 1 else out_dir
    say(f"removed {counted(len(removed), 'temporary file')} an interrupted run left in {shell_path(where)} "
        f"({human_bytes(sum(size for _, size in removed))})")


def _refuse_shared_files(train: list[Path], test: list[Path]) -> None:
    """A test table is rows the model never saw: a file given to --test-data that is also one of --data's
    (the same file, by another name or in a folder of shards) is refused."""
    def key(p: Path):
        st = p.stat()
        return st.st_dev, st.st_ino

    trained = {key(p): p for p in train}
    for p in test:
        if key(p) in trained:
            also = "" if trained[key(p)] == p else f" (as {shown(trained[key(p)])})"
            raise UsageError(f"--test-data {shown(p)}: this file is also part of --data{also}: the model would be "
                             "tested on rows it was trained on; give a table of other rows, or leave --test-data out "
                             "for a seeded split of --data")


def _require_file(path: Path, option: str) -> None:
    if path.is_dir():
        raise LessonError(f"{option} {shown(path)}: is a folder, expected a file")
    if not path.is_file():
        raise LessonError(f"{option} {shown(path)}: no such file")


def _name(paths: list[Path]) -> str:
    """A table's name in a message: its file, or its first shard and how many more."""
    return shown(paths[0]) + (f" (+{len(paths) - 1} shards)" if len(paths) > 1 else "")


def _table_shape(paths: list[Path], option: str) -> tuple[int, int]:
    """Rows and columns of a table (the headers of its shards only); a broken file is the user's mistake."""
    with _data_call(data_pkg().open_table, paths, option=option) as t:
        rows, cols = t.n_rows, t.n_columns
    if rows < 1:
        raise LessonError(f"{option} {_name(paths)}: the table has no rows")
    if cols < 2:
        raise LessonError(f"{option} {_name(paths)}: a table needs input columns and the target y (the last "
                          f"column); this one has {cols} column")
    return rows, cols


def _refuse_stats_of_another_width(stats_path: Path, train: list[Path]) -> tuple[Stats, int]:
    """The stats and the table's columns, once the stats are known to have as many columns."""
    try:
        stats = Stats.load(stats_path)
    except ValueError as e:
        raise LessonError(f"{ours(e)} (the stats file of {_name(train)})") from None
    _, cols = _table_shape(train, "--data")
    if cols != stats.n_columns:
        raise LessonError(f"{shown(stats_path)} describes {stats.n_columns} columns but {_name(train)} has {cols}: "
                          f"it is the stats file of another table; give the one written with {shown(train[0].name)} "
                          "(--stats)")
    return stats, cols


def _check_tables(train: list[Path], test: list[Path] | None, stats_path: Path, stats: Stats | None = None) -> Stats:
    """The stats file and the tables belong together: same columns, test data normalized with the
    training stats. Shards that disagree with each other (columns, dtype) are refused naming the odd one.
    ``stats``: the stats already loaded and checked against the training table (by ``table_stats``), or
    None to load and check them here. Returns the stats."""
    if stats is None:
        stats, cols = _refuse_stats_of_another_width(stats_path, train)
    else:
        cols = stats.n_columns
    if stats.data_max[-1] == stats.data_min[-1]:  # a constant column normalizes to 0, and 0 reads back as that value
        raise LessonError(f"{shown(stats_path)}: the target {stats.columns[-1]} (the last column) is "
                          f"{stats.data_min[-1]:g} in every row of the training table: there is nothing to learn, and "
                          f"any other value of it (in test rows) would read back as {stats.data_min[-1]:g}; check the "
                          "table's last column")
    if test is not None:
        _, test_cols = _table_shape(test, "--test-data")
        if test_cols != cols:
            raise LessonError(f"--test-data {_name(test)} has {test_cols} columns but the training table "
                              f"{_name(train)} has {cols}: the test table must have the training table's columns, "
                              "normalized with its stats (wideann normalize TEST.csv -o TEST.npy --stats "
                              f"{shell_path(stats_path, stream=sys.stderr)})")
        for shard in test:
            own = Path(default_stats_path(shard))
            if shard.suffix.lower() == ".npy" and own.is_file() and own.resolve() != stats_path.resolve():
                try:
                    same = Stats.load(own).same_transform(stats)
                except ValueError:
                    same = False
                if not same:
                    again = shell_path(stats_path, stream=sys.stderr)  # (a hint: quoted for stderr, its stream)
                    raise LessonError(f"--test-data {shown(shard)} was normalized with its own stats ({shown(own)}), "
                                      "not with the training table's: its numbers would mean something else; "
                                      f"normalize the test CSV again with --stats {again}")
    return stats


def check_finite(accelerator, *parts) -> None:
    """Each ``(table, rows)`` of ``parts`` read once to refuse a value that is not a finite number, with one line
    naming the file, row and column (:func:`wideann.data.check_finite`). Lessons 3-4 check their validation and
    test rows so before training: a nan or inf in them (a table made by hand: ``wideann normalize`` never writes
    one) would make every validation loss nan, or end the run at its test, after all its training, naming no
    table. The training rows are not read ahead (that would cost an epoch of reading): a nan or inf among them
    shows as a training that diverged. With several processes each reads its share of the rows, and all learn
    what one found."""
    data = data_pkg()
    rank, world = (0, 1) if accelerator is None else (accelerator.process_index, accelerator.num_processes)
    rows = sum(len(r) for _t, r in parts)
    size = sum(len(r) * t.row_bytes for t, r in parts) / 2**20
    (print if rank == 0 else (lambda *a: None))(f"checking the validation and test rows for nan or inf: {rows} rows, "
                                                f"{size:.1f} MiB, read once")
    error = None
    try:
        for table, rows in parts:
            data.check_finite(table, np.array_split(np.asarray(rows, dtype=np.int64), world)[rank])
    except Exception as e:  # noqa: BLE001 - raised again by settle, on every process
        error = e
    settle(accelerator, error)
