"""Tables of one or several ``.npy`` shards, read as one table.

A table too large for one file, or normalized on several machines, is a list of ``.npy`` shards with the
same columns, dtype and stats, read as one table: rows in file order (shard 0's rows, then shard 1's, ...).
A folder stands for the ``.npy`` files in it, sorted by name as ``ls`` sorts them (zero-pad numbers:
``part-09`` comes before ``part-10``, ``part-9`` does not).

- :func:`table_paths` resolves files and folders into the list of shard paths;
- :func:`open_table` opens them: an :class:`~wideann.data.npy.NpyTable` for one file, a
  :class:`ShardSet` for several (the same reading interface, global row numbers);
- :func:`table_stats` finds the stats file of a table and checks that every shard was normalized with it (and
  that stats given for it were fitted on at least as many rows as it holds);
- :func:`load_table` reads a whole (small) table into memory.

Shards that disagree (columns, dtype, stats file) are refused with a :class:`wideann.DataError` of one
line that names the odd shard.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from .._atomic import kind_of
from ..engine import DataError, default_stats_path
from ..stats import Stats
from .npy import NpyTable, rows_out

Source = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


def table_paths(source: Source) -> list[Path]:
    """The shard files of a table: ``source`` is a ``.npy`` file, a folder of them, or a list of those.

    A folder gives its ``*.npy`` files (not those of subfolders) sorted by name. A missing path, a folder
    without ``.npy`` files and a file listed twice are refused.
    """
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not items:
        raise DataError("no table given")
    paths: list[Path] = []
    named: list[str] = []  # each path as the caller gave it ("./sh/p.npy": Path() would drop the "./")
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted((q for q in p.iterdir() if q.suffix.lower() == ".npy" and q.is_file()),
                           key=lambda q: q.name)
            if not found:
                raise DataError(f"{p}: no .npy files in this folder")
            paths += found
            named += [os.path.join(os.fspath(item), q.name) for q in found]
        elif p.is_file():
            paths.append(p)
            named.append(os.fspath(item))
        elif os.path.exists(p):  # a FIFO, a device, a socket: a table is read by row offsets, from a file
            raise DataError(f"{p}: is {kind_of(p)}, expected a .npy file or a folder of them")
        else:
            raise DataError(f"{p}: no such file or folder")
    seen: dict = {}
    for p, name in zip(paths, named):
        key = os.path.realpath(p)
        if key in seen:
            raise DataError(f"{name}: listed twice (also as {seen[key]}); a shard must appear once in a table")
        seen[key] = name
    return paths


class ShardSet:
    """Several ``.npy`` shards read as one table, rows in file order.

    The reading interface of :class:`~wideann.data.npy.NpyTable` (``n_rows``, ``n_columns``, ``dtype``,
    ``row_bytes``, ``read_rows``, ``read_index``), over global row numbers: row ``i`` of the set is row
    ``i - starts[k]`` of shard ``k``. Every shard must have the same number of columns and the same dtype
    as the first; the odd one is named in the error. Pickled or copied, each shard is opened anew by its
    path, as an :class:`~wideann.data.npy.NpyTable` is.
    """

    def __init__(self, paths: Sequence[Union[str, os.PathLike]]):
        paths = [Path(p) for p in paths]
        if not paths:
            raise DataError("a shard set needs at least one .npy file")
        self.shards: list[NpyTable] = []
        try:
            for p in paths:
                t = NpyTable(p)
                self.shards.append(t)
                first = self.shards[0]
                if t.n_columns != first.n_columns:
                    raise DataError(f"{t.path}: {t.n_columns} columns, but the first shard {first.path} has "
                                    f"{first.n_columns}; the shards of one table must have the same columns")
                if t.dtype != first.dtype:
                    raise DataError(f"{t.path}: dtype {t.dtype}, but the first shard {first.path} is "
                                    f"{first.dtype}; the shards of one table must have the same dtype")
        except BaseException:
            self.close()
            raise
        first = self.shards[0]
        self.paths = [t.path for t in self.shards]
        self.path = first.path if len(self.shards) == 1 else f"{first.path} (+{len(self.shards) - 1} shards)"
        self.dtype, self.n_columns, self.row_bytes = first.dtype, first.n_columns, first.row_bytes
        self.starts = np.cumsum([0] + [t.n_rows for t in self.shards]).astype(np.int64)
        self.reader_threads: int | None = None  # threads of the native batch reader (None: the default)
        self.n_rows = int(self.starts[-1])
        self.shape = (self.n_rows, self.n_columns)

    # ---- lifetime ----------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        # its shards (each pickled as an NpyTable is: opened anew by its path), never the native reader
        return {k: v for k, v in self.__dict__.items() if k != "_native_reader"}

    def close(self) -> None:
        self.__dict__.pop("_native_reader", None)  # its threads and its copies of the descriptors
        for t in self.shards:
            t.close()

    def __enter__(self) -> "ShardSet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"ShardSet({len(self.shards)} shards from {self.shards[0].path!r}, {self.n_rows} rows x "
                f"{self.n_columns} columns, {self.dtype})")

    def __len__(self) -> int:
        return self.n_rows

    @property
    def n_inputs(self) -> int:
        """Input columns: all but the last (the target)."""
        return self.n_columns - 1

    # ---- reading -----------------------------------------------------------------------------
    def pieces(self, start: int, stop: int):
        """``(shard, local_start, local_stop, offset)`` for the rows ``[start, stop)``, split at shard
        boundaries; ``offset`` is the position of the piece's first row in ``[start, stop)``."""
        k = int(np.searchsorted(self.starts, start, side="right")) - 1
        at = start
        while at < stop:
            while self.starts[k + 1] <= at:  # skip empty shards
                k += 1
            end = min(stop, int(self.starts[k + 1]))
            yield self.shards[k], at - int(self.starts[k]), end - int(self.starts[k]), at - start
            at = end

    def read_rows(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` as float32, shape ``(stop - start, n_columns)``."""
        out = rows_out(self, start, stop, out)
        for shard, a, b, at in self.pieces(start, stop):
            shard.read_rows(a, b, out[at:at + b - a])
        return out

    # the same reading as one file's, over the shards' read_rows (and the native reader over the shards)
    read_index = NpyTable.read_index


def open_table(source: Source) -> Union[NpyTable, ShardSet]:
    """A table from a ``.npy`` file, a folder of shards or a list (see :func:`table_paths`): an
    :class:`NpyTable` for one file, a :class:`ShardSet` for several."""
    paths = table_paths(source)
    return NpyTable(paths[0]) if len(paths) == 1 else ShardSet(paths)


def load_table(source: Source, available: int | None = None) -> np.ndarray:
    """The whole table as one float32 array (for small tables that fit in memory: lessons 1 and 2).

    A table that would not fit twice in the memory ``available`` (default: what the machine, or its
    container, has available now; a lesson also copies its rows into the split) is refused with a
    :class:`DataError` that points to lesson 3, instead of a ``MemoryError`` or the kernel's OOM killer. A value
    that is not a finite number is refused too, naming its file, row and column (:func:`refuse_non_finite`), and
    so is a value of a float64 table that does not fit float32."""
    with open_table(source) as t:
        need = 2 * t.n_rows * t.n_columns * 4
        available = available_memory() if available is None else available
        if available is not None and need > available:
            from ..diskspace import human_bytes

            raise DataError(f"{t.path}: {t.n_rows:,} rows x {t.n_columns:,} columns take {human_bytes(need // 2)} "
                            f"as float32, twice that with the split, and this machine has {human_bytes(available)} "
                            "of memory available: lessons 1 and 2 hold the whole table; lesson 3 reads it from "
                            "disk batch by batch")
        out = t.read_rows(0, t.n_rows)
        step = _chunk_rows(t)
        for a in range(0, t.n_rows, step):  # (in pieces: a mask of the whole table would be a quarter of it again)
            rows = np.arange(a, min(a + step, t.n_rows))
            if t.dtype.itemsize > 4 and not np.isfinite(out[a:a + step]).all():
                check_finite(t, rows)  # the values as the file holds them: 1e300 is not inf (it does not fit float32)
            refuse_non_finite(t, out[a:a + step], rows)
        return out


def _chunk_rows(table, chunk_bytes: int = 32 << 20) -> int:
    return max(1, chunk_bytes // (4 * table.n_columns))


def _file_row(table, row: int) -> tuple[str, int]:
    """The file holding a table's row ``row`` and the row's number in it (0-based)."""
    if isinstance(table, ShardSet):
        k = int(np.searchsorted(table.starts, row, side="right")) - 1
        return table.shards[k].path, row - int(table.starts[k])
    return table.path, row


def refuse_non_finite(table, block: np.ndarray, rows, first_column: int = 0) -> None:
    """A :class:`DataError` for the first value of ``block`` (the rows ``rows`` of ``table``, its columns from
    ``first_column`` on) that is not a finite number, naming the file, its row and column (1-based, as the
    engine names a CSV's): ``wideann normalize`` never writes nan or inf, a table made or changed by hand may
    hold them. In a float64 ``block``, a finite value that does not fit float32 (the dtype the lessons train in,
    where it would be inf) is refused too, the message saying so."""
    bad = ~np.isfinite(block)
    if block.dtype.itemsize > 4:  # (float64) a finite value too large for float32 becomes inf as the lessons read it
        with np.errstate(over="ignore"):
            bad |= ~np.isfinite(block.astype(np.float32))
    if not bad.any():
        return
    i = int(np.flatnonzero(bad.any(axis=1))[0])
    j = int(np.flatnonzero(bad[i])[0])
    v = float(block[i, j])
    path, local = _file_row(table, int(rows[i]))
    where = f"{path}, row {local + 1}, column {first_column + j + 1}"
    if np.isfinite(v):
        raise DataError(f"{where}: {v:g} does not fit float32 (the dtype the lessons train in: it would be "
                        f"{'inf' if v > 0 else '-inf'}); values must be within +-{float(np.finfo(np.float32).max):g}")
    raise DataError(f"{where}: expected a finite number, found {'nan' if v != v else ('inf' if v > 0 else '-inf')}")


def check_finite(table, rows=None) -> None:
    """Read the rows ``rows`` (sorted indices; default: all) of a table (an open table, or what
    :func:`open_table` takes) in pieces of about 32 MiB, with the native reader (several threads, the
    table's dtype, two buffers reused), and refuse the first value that is not a finite number (see
    :func:`refuse_non_finite`)."""
    if not hasattr(table, "read_index"):
        with open_table(table) as t:
            return check_finite(t, rows)
    rows = np.arange(table.n_rows) if rows is None else np.asarray(rows, dtype=np.int64)
    step = _chunk_rows(table)
    x = np.empty((min(step, len(rows)), table.n_inputs), dtype=table.dtype)
    y = np.empty((x.shape[0], 1), dtype=table.dtype)
    for a in range(0, len(rows), step):
        part = rows[a:a + step]
        table.read_index(part, out=(x[:part.size], y[:part.size]))
        refuse_non_finite(table, x[:part.size], part)
        refuse_non_finite(table, y[:part.size], part, first_column=table.n_inputs)


def available_memory() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable; in a container with a memory limit (cgroup v2),
    the limit less its anonymous memory when lower: its page cache can be reclaimed), or None where it is
    not known."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            stat = dict(line.split() for line in Path("/sys/fs/cgroup/memory.stat").read_text().splitlines())
            found.append(int(limit) - int(stat["anon"]))
    except (OSError, ValueError, KeyError):
        pass
    return min(found) if found else None


def _differs(a: Stats, b: Stats) -> str:
    if a.columns != b.columns:
        return (f"{a.n_columns} columns" if a.n_columns != b.n_columns else "other column names")
    if a._min != b._min or a._max != b._max:
        bad = next(i for i in range(a.n_columns) if a._min[i] != b._min[i] or a._max[i] != b._max[i])
        return f"another min/max for column {a.columns[bad]!r}"
    return ""


def stats_beside(source: Source, stats: Union[str, os.PathLike, None] = None) -> Union[Path, None]:
    """The stats file beside the shards (``t.npy`` -> ``t.stats.json``), checked: every one found must define
    the same transform (columns, min and max; row counts and sources may differ) as ``stats`` if given,
    else as the first one found, and without ``stats`` every shard must have one (a shard without one may
    have been normalized with any stats). None when no shard has one."""
    paths = table_paths(source)
    beside = [(p, Path(default_stats_path(p))) for p in paths]
    beside = [(p, s) for p, s in beside if s.is_file()]
    ref_path = Path(stats) if stats is not None else (beside[0][1] if beside else None)
    if ref_path is None:
        return None
    if stats is None and len(beside) < len(paths):  # (with stats given, they are the ones of the others)
        lacking = next(p for p in paths if not Path(default_stats_path(p)).is_file())
        raise DataError(f"{lacking}: no stats file beside it, unlike {beside[0][0]}: which stats it was normalized "
                        "with is not known; give the stats file every shard was normalized with (--stats)")
    ref = Stats.load(ref_path)
    for p, s in beside:
        if os.path.realpath(s) == os.path.realpath(ref_path):
            continue
        why = _differs(Stats.load(s), ref)
        if why:
            raise DataError(f"{p}: normalized with other stats: its {s.name} differs from {ref_path} ({why}); "
                            + _advice(beside, ref_path, given=stats is not None, one_file=len(paths) == 1))
    return ref_path


def _advice(beside: list, ref_path, given: bool, one_file: bool) -> str:
    """What to do about a table whose stats files beside its shards differ from ``ref_path``. When the files
    beside the shards agree with each other (always so for one file), they describe the table (normalize
    writes the stats a table was made with beside it) and the file given with --stats is another table's;
    otherwise the shards were normalized with stats of their own, which must be merged."""
    first = Stats.load(beside[0][1])
    agree = all(not _differs(Stats.load(s), first) for _, s in beside[1:])
    if not (given and agree):
        return ("the shards of one table need the same stats: wideann merge-stats, then normalize each shard with "
                "--stats merged.json")
    table, own = beside[0][0], beside[0][1]
    if one_file:
        return (f"{Path(ref_path).name} is the stats file of another table; give the one written with {table.name} "
                f"(--stats), or leave --stats out for {own.name} beside it")
    return (f"{Path(ref_path).name} is the stats file of another table; give the one the shards were normalized "
            f"with (--stats): their {own.name} and the others beside them describe it")


def table_stats(source: Source, stats: Union[str, os.PathLike, None] = None) -> tuple[Path, Stats]:
    """The stats file of a table and its :class:`~wideann.Stats`, checked against every shard.

    ``stats`` is the file to use; without it, the stats file beside the shards (``t.npy`` ->
    ``t.stats.json``). Every stats file found beside a shard must define the same transform (see
    :func:`stats_beside`), and the stats must have as many columns as the table: a shard normalized with
    other stats would be silently wrong in a table, so it is refused.

    Given ``stats`` fitted on fewer rows than the table holds, and not confirmed by a stats file beside every
    shard, are refused too (:func:`_refuse_stats_of_part_of_the_table`): they describe part of the table (one
    shard's stats, given for all of them), not the stats the shards of a table are normalized with (fitted on
    all of its rows, or on more: merged with held-out shards or test data, which is fine).
    """
    paths = table_paths(source)
    if stats is not None and not Path(stats).is_file():
        raise DataError(f"{stats}: stats file not found")
    if stats is not None:  # first the plainest mistake: the stats of a table of another width
        given = Stats.load(stats)
        with open_table(paths) as t:
            if t.n_columns != given.n_columns:
                raise DataError(f"{stats} describes {given.n_columns} columns but {t.path} has {t.n_columns}: it is "
                                "the stats file of another table")
    ref_path = stats_beside(paths, stats)
    if ref_path is None:
        want = default_stats_path(paths[0])
        if len(paths) > 1:  # shards normalized with merged stats (normalize --stats) have none beside them
            raise DataError(f"{want}: the stats file of {paths[0]} is missing (nor beside any other shard: shards "
                            "normalized with --stats merged.json have none); give the stats the shards were "
                            "normalized with: --stats merged.json")
        raise DataError(f"{want}: the stats file of {paths[0]} is missing (wideann normalize writes it beside a "
                        "table it fits; applying stats, normalize --stats S, it writes none): give the stats the "
                        "table was normalized with: --stats S")
    ref = Stats.load(ref_path)
    with open_table(paths) as t:
        if t.n_columns != ref.n_columns:
            raise DataError(f"{ref_path}: stats of {ref.n_columns} columns, but the table {t.path} has {t.n_columns}")
        if stats is not None:
            _refuse_stats_of_part_of_the_table(paths, t, Path(stats), ref)
    return Path(ref_path), ref


def _refuse_stats_of_part_of_the_table(paths: list[Path], table, stats: Path, st: Stats) -> None:
    """A :class:`DataError` when the ``stats`` given for a table were fitted on fewer rows than it holds, unless
    every shard has a stats file beside it (which :func:`stats_beside` has found to define the same transform).

    The mistake this finds: shards normalized with merged stats (``wideann merge-stats``, then ``normalize
    --stats merged.json`` per shard, which writes no stats file beside them), then given one shard's stats
    (``--stats stats/part_01.json``). Nothing in the ``.npy`` files says which stats made them, so the table
    would train, and every number in original units (predictions, RMSE) would be computed with that shard's
    min and max: right only where they happen to be the merged ones. Stats fitted on all of the table's rows
    count at least as many rows as it holds (more, merged with held-out shards or test data: fine). Stats
    fitted on fewer rows and applied to all of them (a sample) are the one legitimate case this refuses; it is
    said so by the stats file beside each shard, which ``normalize --stats S --stats-out SHARD.stats.json``
    writes (a copy of S): a record of the transform each shard was made with, which this check then trusts.
    """
    if st.n_rows >= table.n_rows or all(Path(default_stats_path(p)).is_file() for p in paths):
        return
    where = (f"beside each shard (t.npy -> t.stats.json: wideann normalize ... --stats {stats.name} --stats-out "
             f"SHARD.stats.json writes one)" if len(paths) > 1 else
             f"beside it, as {Path(default_stats_path(paths[0])).name} (wideann normalize ... --stats {stats.name} "
             f"--stats-out {Path(default_stats_path(paths[0])).name} writes one)")
    guess = " (one shard's?)" if len(paths) > 1 else ""
    raise DataError(f"{table.path}: {table.n_rows:,} rows, but {stats} was fitted on {st.n_rows:,}: the stats of part "
                    f"of the table{guess}, not the ones a table is normalized with (fitted on all its rows); "
                    f"give the stats the table was normalized with (for shards: merged, by wideann merge-stats of "
                    f"every shard's stats) -- or, if these very stats were applied to all its rows, put a copy of "
                    f"them {where}")
