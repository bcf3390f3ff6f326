"""Per-column min-max statistics: the stats file and the transform it defines.

A stats file is JSON::

    {"format": "wideann-stats", "version": 1, "columns": [...], "min": [...], "max": [...],
     "count": [...], "n_rows": N, "sources": [...]}

Numbers are written with Python's shortest round-trip repr, so a saved and re-loaded file gives the
same doubles bit for bit.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ._atomic import atomic_path

FORMAT = "wideann-stats"
VERSION = 1


class Stats:
    """Min-max statistics of a table (one entry per column; the target ``y`` is the last column).

    ``transform`` maps values to ``(v - min) / (max - min)``; a constant column (max == min) maps to 0
    and back to its value. Column selection (``columns=``) takes names or integer positions.
    """

    def __init__(self, columns: Sequence[str], data_min, data_max, n_rows: int,
                 sources: Sequence[str] = (), count=None):
        self.columns = [str(c) for c in columns]
        self.data_min = np.asarray(data_min, dtype=np.float64).copy()
        self.data_max = np.asarray(data_max, dtype=np.float64).copy()
        self.n_rows = int(n_rows)
        self.sources = [str(s) for s in sources]
        n = len(self.columns)
        self.count = (np.full(n, self.n_rows, dtype=np.int64) if count is None
                      else np.asarray(count, dtype=np.int64).copy())
        if not (self.data_min.shape == self.data_max.shape == self.count.shape == (n,)):
            raise ValueError(f"stats: {n} column names but {self.data_min.size} minima, "
                             f"{self.data_max.size} maxima and {self.count.size} counts")
        if n == 0:
            raise ValueError("stats: no columns")
        if not (np.all(np.isfinite(self.data_min)) and np.all(np.isfinite(self.data_max))):
            raise ValueError("stats: min and max must be finite numbers")
        bad = np.flatnonzero(self.data_max < self.data_min)
        if bad.size:
            raise ValueError(f"stats: column {self.columns[bad[0]]!r} has max < min")

    # ---- shape -------------------------------------------------------------------------------
    @property
    def n_columns(self) -> int:
        return len(self.columns)

    @property
    def data_range(self) -> np.ndarray:
        """max - min per column (0 for a constant column; inf where it overflows a double)."""
        with np.errstate(over="ignore"):
            return self.data_max - self.data_min

    def __repr__(self) -> str:
        return f"Stats({self.n_columns} columns, {self.n_rows} rows)"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Stats):
            return NotImplemented
        return (self.columns == other.columns and self.n_rows == other.n_rows
                and np.array_equal(self.data_min, other.data_min)
                and np.array_equal(self.data_max, other.data_max)
                and np.array_equal(self.count, other.count))

    def column_indices(self, columns=None) -> np.ndarray:
        """Positions of ``columns`` (names or ints; negative ints count from the end)."""
        if columns is None:
            return np.arange(self.n_columns)
        out = []
        for c in columns:
            if isinstance(c, (int, np.integer)):
                i = int(c)
                if not -self.n_columns <= i < self.n_columns:
                    raise ValueError(f"stats: column index {i} out of range for {self.n_columns} columns")
                out.append(i % self.n_columns)
            else:
                try:
                    out.append(self.columns.index(str(c)))
                except ValueError:
                    raise ValueError(f"stats: no column named {str(c)!r}") from None
        return np.asarray(out, dtype=np.int64)

    # ---- transform ---------------------------------------------------------------------------
    def transform(self, X, columns=None, clip: bool = False) -> np.ndarray:
        """Normalize ``X`` (rows x columns, or 1-D for a single column) to [0, 1], in float64."""
        idx = self.column_indices(columns)
        X = np.asarray(X, dtype=np.float64)
        lo, hi = self.data_min[idx], self.data_max[idx]
        # In halves (exact) so that a range wider than a double holds, as in the engine.
        rng = hi / 2 - lo / 2
        safe = np.where(rng == 0, 1.0, rng)
        out = np.where(rng == 0, 0.0, (X / 2 - lo / 2) / safe)
        return np.clip(out, 0.0, 1.0) if clip else out

    def inverse_transform(self, X, columns=None) -> np.ndarray:
        """Back to original units: ``x * (max - min) + min``, in float64.

        A 1-D input with ``columns=None`` is taken as the target (the last column).
        """
        X = np.asarray(X, dtype=np.float64)
        if columns is None and X.ndim == 1:
            columns = [-1]
        idx = self.column_indices(columns)
        lo, hi = self.data_min[idx], self.data_max[idx]
        with np.errstate(over="ignore"):
            rng = hi - lo
        wide = ~np.isfinite(rng)
        if not np.any(wide):
            return X * rng + lo
        # A range wider than a double: in halves, then doubled (exact), as in the engine.
        return np.where(wide, (X * (hi / 2 - lo / 2) + lo / 2) * 2, X * np.where(wide, 0.0, rng) + lo)

    def to_sklearn(self):
        """A fitted ``sklearn.preprocessing.MinMaxScaler`` with these statistics."""
        from sklearn.preprocessing import MinMaxScaler

        scaler = MinMaxScaler().fit(np.vstack([self.data_min, self.data_max]))
        scaler.n_samples_seen_ = self.n_rows
        scaler.feature_names_in_ = np.asarray(self.columns, dtype=object)
        return scaler

    # ---- merge -------------------------------------------------------------------------------
    @classmethod
    def merge(cls, *parts: "Stats") -> "Stats":
        """Exact stats of the concatenation of shards: min of mins, max of maxes, sum of counts."""
        if len(parts) == 1 and not isinstance(parts[0], Stats):
            parts = tuple(parts[0])
        if not parts:
            raise ValueError("merge: no stats given")
        first = parts[0]
        for p in parts[1:]:
            if p.columns != first.columns:
                raise ValueError(f"merge: columns differ ({p.n_columns} columns "
                                 f"{_first_difference(first.columns, p.columns)})")
        return cls(first.columns,
                   np.minimum.reduce([p.data_min for p in parts]),
                   np.maximum.reduce([p.data_max for p in parts]),
                   sum(p.n_rows for p in parts),
                   [s for p in parts for s in p.sources],
                   np.sum([p.count for p in parts], axis=0))

    # ---- file --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "columns": self.columns,
            "min": [_num(v) for v in self.data_min],
            "max": [_num(v) for v in self.data_max],
            "count": [int(c) for c in self.count],
            "n_rows": self.n_rows,
            "sources": self.sources,
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "stats") -> "Stats":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{where}: not a wideann stats file (expected \"format\": \"{FORMAT}\")")
        try:
            return cls(d["columns"], d["min"], d["max"], d["n_rows"], d.get("sources", ()),
                       d.get("count"))
        except KeyError as e:
            raise ValueError(f"{where}: missing key {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None

    @classmethod
    def load(cls, path) -> "Stats":
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}") from None
        return cls.from_dict(d, where=path)

    def save(self, path) -> None:
        """Write the stats file atomically (a temporary name in the same folder, then rename)."""
        try:
            self._save(path)
        except OSError as e:  # e.g. a full disk: name the stats file, not the temporary one
            raise OSError(e.errno, e.strerror or str(e), os.fspath(path)) from None

    def _save(self, path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                # One key a line, each list on its line: readable, and compact for 12,849 columns.
                items = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in self.to_dict().items()]
                f.write("{\n" + ",\n".join(items) + "\n}\n")


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
