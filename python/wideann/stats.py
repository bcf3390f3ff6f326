"""Per-column min-max statistics: the stats file and the transform it defines.

A stats file is JSON::

    {"format": "wideann-stats", "version": 1, "columns": [...], "min": [...], "max": [...],
     "count": [...], "n_rows": N, "sources": [...]}

``sources`` are the paths of the CSV files the stats were fitted on, as text. A file name on Linux is bytes,
and a name that is not UTF-8 has no exact text: its ``sources`` entry shows each such byte as ``\\xNN`` (as
the command line's messages do), and ``"source_bytes"``, a list beside ``sources`` (present only then, null
for every name that is text), holds its exact bytes percent-encoded (``/data/in%FF.csv``). The file stays
valid UTF-8 JSON that any reader takes (Python's ``json`` wrote such a byte as a lone surrogate,
``"\\udcff"``, which jq and others read as U+FFFD, and the name was lost); ``Stats.sources`` gives the name
as Python's ``os.fsdecode`` does (the byte as a surrogate escape), so that it opens the same file. Files
written before, with ``"\\udcff"``, are read as they were. (:mod:`wideann._exact_names` spells the names, for the
other JSON files that hold file names too.)

Numbers are written with Python's shortest round-trip repr, so a saved and re-loaded file gives the
same doubles bit for bit. Loading, merging and saving need no numpy (so ``wideann stats`` and
``merge-stats`` start fast); the arrays and transforms import it when first used.
"""
from __future__ import annotations

import json
import math
import os
from typing import Callable, NamedTuple, Sequence

from ._atomic import atomic_path
from ._exact_names import spell, unspell

FORMAT = "wideann-stats"
VERSION = 1


class Stats:
    """Min-max statistics of a table (one entry per column; the target ``y`` is the last column).

    ``transform`` maps values to ``(v - min) / (max - min)``; a constant column (max == min) maps to 0
    and back to its value. Column selection (``columns=``) takes a name, a position, or a list of names and
    integer positions (see :meth:`column_indices`).
    """

    def __init__(self, columns: Sequence[str], data_min, data_max, n_rows: int,
                 sources: Sequence[str] = (), count=None):
        # Every check of the values is here, so that what is made can be saved and loaded back (from_dict
        # checks the types of a file's entries first, to name the first bad one, then calls this).
        for arg, v in (("columns", columns), ("sources", sources)):
            if isinstance(v, (str, bytes)):
                raise TypeError(f"stats: {arg} must be a list of strings, not one {type(v).__name__}: {v!r}")
        self.columns = [str(c) for c in columns]
        self.n_rows = _whole_number(n_rows, "n_rows")
        self.sources = [str(s) for s in sources]
        for i, source in enumerate(self.sources):
            try:
                os.fsencode(source)  # a file name: text, or a name's bytes as Python decodes them
            except UnicodeEncodeError:
                raise ValueError(f"stats: source {i + 1} is not a file name: {source!r}") from None
        n = len(self.columns)
        # Plain lists inside: the engine takes them as they are; numpy arrays are made on first use.
        self._min = [float(v) for v in data_min]
        self._max = [float(v) for v in data_max]
        self._count = [self.n_rows] * n if count is None else [_whole_number(c, "count") for c in count]
        self._arrays: dict = {}
        if not (len(self._min) == len(self._max) == len(self._count) == n):
            raise ValueError(f"stats: {n} column names but {len(self._min)} minima, "
                             f"{len(self._max)} maxima and {len(self._count)} counts")
        if n == 0:
            raise ValueError("stats: no columns")
        for i, name in enumerate(self.columns):
            try:
                name.encode("utf-8")  # the engine and the JSON file take names as UTF-8
            except UnicodeEncodeError:
                raise ValueError(f"stats: the name of column {i + 1} is not valid text: {name!r}") from None
        if not all(map(math.isfinite, self._min)) or not all(map(math.isfinite, self._max)):
            raise ValueError("stats: min and max must be finite numbers")
        for name, lo, hi in zip(self.columns, self._min, self._max):
            if hi < lo:
                raise ValueError(f"stats: column {name!r} has max < min")
        for name, c in zip(self.columns, self._count):  # every column counts every row (no value may be
            if c != self.n_rows:  # missing): another count is a damaged or edited file (merge would add it up)
                raise ValueError(f"stats: \"count\" of column {_short(name)} is {c}, but \"n_rows\" is "
                                 f"{self.n_rows}: every column counts every row")

    # ---- shape -------------------------------------------------------------------------------
    def _array(self, key: str, values, dtype: str):
        if key not in self._arrays:
            import numpy as np

            a = np.array(values, dtype=dtype)
            a.flags.writeable = False  # the lists stay the truth: these are read-only views of them
            self._arrays[key] = a
        return self._arrays[key]

    @property
    def data_min(self):
        """Minimum per column (float64 numpy array)."""
        return self._array("min", self._min, "float64")

    @property
    def data_max(self):
        """Maximum per column (float64 numpy array)."""
        return self._array("max", self._max, "float64")

    @property
    def count(self):
        """Values counted per column (int64 numpy array; every column has n_rows)."""
        return self._array("count", self._count, "int64")

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    @property
    def data_range(self):
        """max - min per column (0 for a constant column; inf where it overflows a double)."""
        import numpy as np

        with np.errstate(over="ignore"):
            return self.data_max - self.data_min

    def __repr__(self) -> str:
        return f"Stats({self.n_columns} columns, {self.n_rows} rows)"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Stats):
            return NotImplemented
        return (self.columns == other.columns and self.n_rows == other.n_rows
                and self._min == other._min and self._max == other._max
                and self._count == other._count)

    def same_transform(self, other: "Stats") -> bool:
        """Whether both normalize the same way: the same columns, mins and maxes (row counts and sources
        may differ, as between shards normalized with merged stats)."""
        return self.columns == other.columns and self._min == other._min and self._max == other._max

    def column_indices(self, columns=None):
        """Positions of ``columns``, an int64 array: ``None`` for every column; one name (a ``str``) or one
        position (an ``int``; negative ints count from the end); or a list of names and positions.

        A bool is refused (``True`` is not position 1), and so is a name that several columns bear (a
        CSV header may repeat a name): select such a column by position."""
        import numpy as np

        if columns is None:
            return np.arange(self.n_columns)
        if isinstance(columns, (str, int, np.integer, np.bool_)):
            columns = [columns]  # one name or position (a str is not iterated letter by letter)
        elif isinstance(columns, (bytes, bytearray)):
            raise TypeError(f"stats: columns takes names (str) or positions (int), not bytes: {columns!r}")
        positions: dict | None = None
        out = []
        for c in columns:
            if isinstance(c, (bool, np.bool_)):
                raise TypeError(f"stats: columns takes names (str) or positions (int), not a bool: {c!r}")
            if isinstance(c, (int, np.integer)):
                i = int(c)
                if not -self.n_columns <= i < self.n_columns:
                    raise ValueError(f"stats: column index {i} out of range for {self.n_columns} columns")
                out.append(i % self.n_columns)
            elif isinstance(c, str):
                if positions is None:
                    positions = {}
                    for i, name in enumerate(self.columns):
                        positions.setdefault(name, []).append(i)
                found = positions.get(str(c))
                if not found:
                    raise ValueError(f"stats: no column named {str(c)!r}")
                if len(found) > 1:
                    raise ValueError(f"stats: {len(found)} columns are named {str(c)!r} (positions "
                                     f"{', '.join(map(str, found))}): select the one meant by position")
                out.append(found[0])
            else:
                raise TypeError(f"stats: columns takes names (str) or positions (int), not "
                                f"{type(c).__name__}: {c!r}")
        return np.asarray(out, dtype=np.int64)

    # ---- transform ---------------------------------------------------------------------------
    def _shaped(self, X, columns, what: str):
        """``X`` as float64 and the positions of its columns, after checking that its shape fits them.

        ``X`` is rows x columns (2-D) or the values of one column (1-D). With ``columns=None``, a 1-D input
        and an ``(n, 1)`` one (a model's prediction) are the target (the last column); a 2-D input of any
        other width must have one column per stats column. A width that does not match the columns
        selected is a ``ValueError``, not broadcast."""
        import numpy as np

        X = np.asarray(X, dtype=np.float64)
        if X.ndim not in (1, 2):
            raise ValueError(f"stats.{what}: expected a 2-D array (rows x columns) or a 1-D one (the values of "
                             f"one column), got {X.ndim}-D (shape {X.shape})")
        if columns is None and (X.ndim == 1 or X.shape[1] == 1):
            columns = [-1]  # the target, as a 1-D or (n, 1) prediction is
        idx = self.column_indices(columns)
        if X.ndim == 1 and len(idx) != 1:
            raise ValueError(f"stats.{what}: a 1-D input is the values of one column, but {len(idx)} columns "
                             "are selected; pass rows x columns (X.reshape(1, -1) for one row)")
        if X.ndim == 2 and X.shape[1] != len(idx):
            selected = f"the stats have {self.n_columns} columns" if columns is None else \
                (f"{len(idx)} columns are selected" if len(idx) != 1 else "1 column is selected")
            raise ValueError(f"stats.{what}: X has {X.shape[1]} columns (shape {X.shape}), but {selected}")
        return X, idx

    def transform(self, X, columns=None, clip: bool = False):
        """Normalize ``X`` to [0, 1], in float64, of the shape of ``X``.

        ``X`` is rows x columns, one per stats column or per column of ``columns``; or 1-D, the values of
        one column. With ``columns=None``, a 1-D or ``(n, 1)`` input is the target (the last column), as
        in :meth:`inverse_transform`, so that ``inverse_transform(transform(y))`` gives ``y`` back. (One row
        of every column is ``X.reshape(1, -1)``.) A width that does not match is a ``ValueError``."""
        import numpy as np

        X, idx = self._shaped(X, columns, "transform")
        lo, hi = self.data_min[idx], self.data_max[idx]
        # As the engine does: (x - min) / (max - min); in halves (exact: these are huge numbers) where
        # max - min or x - min overflows a double (say -1e308 .. 1e308) and the result need not.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            rng = hi - lo
            wide = ~np.isfinite(rng)
            scale = np.where(wide, 0.5, 1.0)
            lo_s, rng_s = lo * scale, np.where(wide, hi / 2 - lo / 2, rng)
            safe = np.where(rng_s == 0, 1.0, rng_s)
            out = (X * scale - lo_s) / safe
            again = ~np.isfinite(out)
            if np.any(again):
                out = np.where(again, (0.5 * (X * scale) - 0.5 * lo_s) / (0.5 * safe), out)
        out = np.where(rng_s == 0, 0.0, out + 0.0)
        return np.clip(out, 0.0, 1.0) if clip else out

    def inverse_transform(self, X, columns=None):
        """Back to original units: ``x * (max - min) + min``, in float64, of the shape of ``X``.

        ``X`` is shaped as for :meth:`transform`: with ``columns=None``, a 1-D input or an ``(n, 1)`` one (a
        model's prediction) is taken as the target (the last column); a 2-D input of another width must
        have one column per stats column. A width that does not match is a ``ValueError``.
        """
        import numpy as np

        X, idx = self._shaped(X, columns, "inverse_transform")
        lo, hi = self.data_min[idx], self.data_max[idx]
        with np.errstate(over="ignore", invalid="ignore"):
            rng = hi - lo
            wide = ~np.isfinite(rng)
            # a range wider than a double in halves, then doubled (exact), as in the engine
            lo_s, rng_s = np.where(wide, lo / 2, lo), np.where(wide, hi / 2 - lo / 2, rng)
            scale = np.where(wide, 2.0, 1.0)
            out = (X * rng_s + lo_s) * scale
            again = ~np.isfinite(out)  # x * range overflowed where the result need not (x far outside [0, 1])
            if np.any(again):
                out = np.where(again, (X * (0.5 * rng_s) + 0.5 * lo_s) * (2 * scale), out)
        return out

    def to_sklearn(self):
        """A fitted ``sklearn.preprocessing.MinMaxScaler`` with these statistics, scaling as :meth:`transform`
        does, up to rounding: ``MinMaxScaler`` computes ``x * scale_ + min_``, not ``(x - min) / (max - min)``,
        so in a column whose values share most of their digits (1 .. 1 + 3 ulp: 1/3 here, 0.25 there) it loses
        what they share, as it does fitted on the data itself. One exception, which no ``MinMaxScaler`` can hold:
        a constant column (max == min) is scaled by 1 there, so a value other than the constant ``v`` becomes
        ``v - min`` (here 0) and a normalized ``x`` goes back to ``x + min`` (here ``min``)."""
        import numpy as np
        from sklearn.preprocessing import MinMaxScaler

        with np.errstate(over="ignore"):
            wide = [(c, lo, hi) for c, lo, hi in zip(self.columns, self.data_min, self.data_max)
                    if not np.isfinite(hi - lo)]
        if wide:  # scikit-learn's scale would be 1 / inf = 0: every value of the column would become 0
            name, lo, hi = wide[0]
            raise ValueError(f"stats: column {name!r} has a range wider than a double (min {lo:g} .. max {hi:g}); "
                             "MinMaxScaler cannot hold it (Stats.transform can)")
        scaler = MinMaxScaler().fit(np.vstack([self.data_min, self.data_max]))
        # scikit-learn takes a range below 10 machine epsilons (2.2e-15, in the column's units) for a constant
        # column and scales it by 1: [1e-16, 3e-16] would become [0, 2e-16], not [0, 1] as the engine writes it.
        # Only max == min is constant here: every other column gets 1 / (max - min), as scikit-learn computes it.
        varying = self.data_max > self.data_min
        with np.errstate(over="ignore", divide="ignore"):
            scale = 1.0 / (self.data_max - self.data_min)[varying]
        if not np.all(np.isfinite(scale)):  # (a range below 5.6e-309: its reciprocal is beyond a double)
            c = int(np.flatnonzero(varying)[np.argmin(np.isfinite(scale))])
            raise ValueError(f"stats: column {self.columns[c]!r} has a range too small for MinMaxScaler's scale "
                             f"(min {self.data_min[c]:g} .. max {self.data_max[c]:g}: 1 / range is beyond a double; "
                             "Stats.transform can hold it)")
        scaler.scale_[varying] = scale
        scaler.min_[varying] = -self.data_min[varying] * scale
        scaler.n_samples_seen_ = self.n_rows
        scaler.feature_names_in_ = np.asarray(self.columns, dtype=object)
        return scaler

    # ---- merge -------------------------------------------------------------------------------
    @classmethod
    def merge(cls, *parts: "Stats") -> "Stats":
        """Exact stats of the concatenation of shards: min of mins, max of maxes, sum of counts."""
        if len(parts) == 1 and not isinstance(parts[0], (Stats, str, bytes, os.PathLike)):
            try:
                parts = tuple(parts[0])  # one list of them
            except TypeError:
                pass  # named below
        if not parts:
            raise ValueError("merge: no stats given")
        for i, p in enumerate(parts):
            if not isinstance(p, Stats):
                hint = " (a path: read it with Stats.load)" if isinstance(p, (str, bytes, os.PathLike)) else ""
                raise TypeError(f"merge: takes Stats objects (or one list of them); argument {i + 1} is "
                                f"{type(p).__name__} {_short_repr(p)}{hint}")
        first = parts[0]
        for p in parts[1:]:
            if p.columns != first.columns:
                raise ValueError(f"merge: columns differ ({p.n_columns} columns "
                                 f"{_first_difference(first.columns, p.columns)})")
        return cls(first.columns,
                   [min(vs) for vs in zip(*(p._min for p in parts))],
                   [max(vs) for vs in zip(*(p._max for p in parts))],
                   sum(p.n_rows for p in parts),
                   [s for p in parts for s in p.sources],
                   [sum(cs) for cs in zip(*(p._count for p in parts))])

    # ---- file --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        spelled = [spell(s) for s in self.sources]
        d = {
            "format": FORMAT,
            "version": VERSION,
            "columns": self.columns,
            "min": [_num(v) for v in self._min],
            "max": [_num(v) for v in self._max],
            "count": list(self._count),
            "n_rows": self.n_rows,
            "sources": [text for text, _ in spelled],
        }
        if any(exact is not None for _, exact in spelled):  # (only then: other files are as they were)
            d[SOURCE_BYTES] = [exact for _, exact in spelled]
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "stats") -> "Stats":
        """Stats from a parsed stats file; every key is checked, so that a damaged file is refused
        with a line naming ``where`` rather than read as something else."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{where}: not a wideann stats file (expected \"format\": \"{FORMAT}\")")
        version = d.get("version", VERSION)  # files of version 1 always carry it; none means 1
        if not _is_int(version) or version < 1:
            raise ValueError(f"{where}: \"version\" must be a whole number >= 1, found {_short(version)}")
        if version > VERSION:
            raise ValueError(f"{where}: stats file version {version} is newer than this wideann knows "
                             f"(version {VERSION}); read it with a newer wideann")
        for key in ("columns", "min", "max", "n_rows"):
            if key not in d:
                raise ValueError(f"{where}: missing key {key!r}")
        _check_list(d, "columns", where, _STRING)
        _check_list(d, "min", where, _NUMBER)
        _check_list(d, "max", where, _NUMBER)
        if "count" in d and d["count"] is not None:
            _check_list(d, "count", where, _COUNT)
        sources = d.get("sources", ())
        if "sources" in d:
            _check_list(d, "sources", where, _STRING)
        if SOURCE_BYTES in d:
            sources = _exact_sources(d, where)
        if not _is_int(d["n_rows"]) or d["n_rows"] < 0:
            raise ValueError(f"{where}: \"n_rows\" must be a whole number >= 0, found {_short(d['n_rows'])}")
        try:
            return cls(d["columns"], d["min"], d["max"], d["n_rows"], sources, d.get("count"))
        except (TypeError, ValueError, OverflowError) as e:
            raise ValueError(f"{where}: {str(e).removeprefix('stats: ')}") from None

    @classmethod
    def load(cls, path) -> "Stats":
        path = os.fsdecode(path)  # (str or bytes paths, as for save)
        return cls.from_dict(read_json(path), where=path)

    def save(self, path) -> None:
        """Write the stats file atomically (a temporary name in the same folder, then rename).

        A name that says something else than a stats file is a ``ValueError``, before anything is written: a
        table's (``.npy``, ``.csv``) or ``-`` (standard output), as the command line and ``normalize(stats_out=)``
        refuse them (:func:`wrong_stats_file_name`)."""
        path = os.fsdecode(path)  # a bytes path too, as load takes (the temporary's name is made as text)
        wrong = wrong_stats_file_name(path, "Stats.save writes")
        if wrong:
            raise ValueError(wrong)
        try:
            with atomic_path(path) as tmp:
                self.write(tmp)
        except OSError as e:
            if e.errno is None:  # one of ours (a missing output folder, ...): its line names the path already
                raise
            # e.g. a full disk: name the stats file, not the temporary one
            raise OSError(e.errno, e.strerror or str(e), path) from None

    def write(self, path) -> None:
        """Write the stats file at ``path`` as it is, not atomically: for a file that is itself a temporary,
        which the caller renames (``normalize`` renames the table and its stats together)."""
        with open(path, "w", encoding="utf-8") as f:
            # One key a line, each list on its line: readable, and compact for 12,849 columns.
            items = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in self.to_dict().items()]
            f.write("{\n" + ",\n".join(items) + "\n}\n")


def wrong_stats_file_name(path: str, what: str) -> str | None:
    """What is wrong when a stats file is to be written at ``path``, a name that says something else: a table's
    (``.npy``, ``.csv``: ``stats -o t.npy`` and ``stats_out="s.npy"`` wrote JSON text into a file named as one) or
    ``-`` (standard output to most commands: it was a file named ``-``). ``what`` says what the path was given as
    (``"stats writes"``, ``"--stats-out is"``). The one check of :meth:`Stats.save`, ``normalize(stats_out=)`` and
    the command line's ``stats -o``, ``merge-stats -o`` and ``--stats-out``."""
    if path == "-":
        return f"-: {what} a stats file, not standard output; name it *.json"
    if os.path.splitext(path)[1].lower() in (".npy", ".csv"):
        return f"{path}: {what} a stats file (JSON); name it *.json"
    return None


def read_json(path) -> object:
    """The parsed content of a JSON file; a file that is not UTF-8 or not JSON is a ``ValueError``
    naming the file, line and column."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValueError(f"{path}: line {line}, column {column}: expected UTF-8 text, found byte "
                         f"0x{raw[e.start]:02x}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}") from None
    except RecursionError:
        raise ValueError(f"{path}: invalid JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise ValueError(f"{path}: invalid JSON: {e}") from None


SOURCE_BYTES = "source_bytes"
"""The key of the exact names of sources that are not UTF-8 (see the module's docstring)."""

def _exact_sources(d: dict, where: str) -> list:
    """``sources`` with each name that ``source_bytes`` holds exactly as those bytes (as ``os.fsdecode`` gives
    them). An entry whose bytes do not read as its ``sources`` entry is refused: one of the two was edited, and
    which is meant cannot be told."""
    _check_list(d, SOURCE_BYTES, where, _STRING_OR_NULL)
    sources, exact = list(d.get("sources", ())), d[SOURCE_BYTES]
    if len(exact) != len(sources):
        raise ValueError(f"{where}: {json.dumps(SOURCE_BYTES)} has {len(exact)} entries, \"sources\" {len(sources)}: "
                         "one entry for each source")
    for i, spelled in enumerate(exact):
        if spelled is None:
            continue
        try:
            sources[i] = unspell(sources[i], spelled)
        except ValueError:
            raise ValueError(f"{where}: {json.dumps(SOURCE_BYTES)}[{i}] {_short(spelled)} is not the name of "
                             f"\"sources\"[{i}] {_short(sources[i])}") from None
    return sources


def _whole_number(v, what: str) -> int:
    """``v`` as an int, which must be whole (an int or a numpy integer, not a bool or a float) and >= 0."""
    if isinstance(v, bool) or not hasattr(v, "__index__"):
        raise TypeError(f"stats: {what} must be a whole number >= 0, found {v!r}")
    i = int(v.__index__())
    if i < 0:
        raise ValueError(f"stats: {what} must be a whole number >= 0, found {i}")
    return i


def _short_repr(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        float(v)  # an integer beyond a double's range is not a number the engine can take
    except OverflowError:
        return False
    return True


def _short(v) -> str:
    text = json.dumps(v) if not isinstance(v, float) else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


class _Entries(NamedTuple):
    """What the entries of a list in a stats file must be: ``what`` (said in the error), ``types`` (the
    exact types that pass at C speed), ``ok`` (the check of one entry, which finds and names the first bad
    one), ``non_negative`` (numbers >= 0)."""
    what: str
    types: frozenset
    ok: Callable
    non_negative: bool = False


_STRING = _Entries("a string", frozenset({str}), lambda v: isinstance(v, str))
_STRING_OR_NULL = _Entries("a string or null", frozenset({str, type(None)}),
                           lambda v: v is None or isinstance(v, str))
_NUMBER = _Entries("a number", frozenset({int, float}), _is_number)
_COUNT = _Entries("a whole number >= 0", frozenset({int}), lambda v: _is_int(v) and v >= 0, non_negative=True)


def _check_list(d: dict, key: str, where: str, entries: _Entries) -> None:
    v = d[key]
    if not isinstance(v, list):
        raise ValueError(f"{where}: {json.dumps(key)} must be a list, found {_short(v)}")
    # At C speed for the common case (a stats file of 12,849 columns is read on every apply); the
    # element-wise check below finds and names the first bad entry.
    if set(map(type, v)) <= entries.types and not (entries.non_negative and v and min(v) < 0):
        return  # (an integer too large for a double is refused when the floats are made)
    for i, x in enumerate(v):
        if not entries.ok(x):
            raise ValueError(f"{where}: {json.dumps(key)}[{i}] must be {entries.what}, found {_short(x)}")


def _num(v: float):
    """Integral values as ints (readable), everything else as shortest round-trip floats."""
    v = float(v)
    if v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v


def _first_difference(a: Sequence[str], b: Sequence[str]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"at column {i + 1}: {x!r} vs {y!r}"
    return f"({len(a)} vs {len(b)} columns)"
