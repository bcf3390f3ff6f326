"""The ``.npy`` format: a 2-D table on disk, read by row ranges with ``os.preadv``.

:class:`NpyTable` parses the header and reads any rows into a buffer. It deliberately does not keep an
``np.memmap`` open: the pages of a live map count in the process's resident memory, so a loader holding
one map over an 8 GB file shows 8 GB of RSS after an epoch.
"""
from __future__ import annotations

import ast
import os

import numpy as np

from ..engine import DataError

_MAGIC = b"\x93NUMPY"
_FLOAT_KINDS = {"f"}


class NpyTable:
    """A 2-D ``.npy`` table on disk, read by row ranges with ``os.preadv``.

    >>> with NpyTable("train.npy") as t:
    ...     first = t.read_rows(0, 100)          # float32 array (100, n_columns)

    Only the header is read when the table is opened; every ``read_*`` call reads exactly the bytes of
    the rows it returns into a new float32 array (or into ``out``).

    A pickled (or copied) table opens its file anew by its path (a descriptor is this process's: shared,
    closing one copy would close the other's file, and another file opened later could take its number),
    and refuses a file whose size or modification time differ from those seen when the table was opened,
    as the native reader does (a :class:`~wideann.DataError`). A closed table stays closed. This is what
    a ``torch.utils.data.DataLoader``'s workers do with a dataset that holds a table.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        try:
            self.dtype, self.shape, self.offset = _parse_header(self._fd, self.path)
        except BaseException:
            os.close(self._fd)
            raise
        self.n_rows, self.n_columns = self.shape
        self.row_bytes = self.n_columns * self.dtype.itemsize
        st = os.fstat(self._fd)
        # what the file was when its header was read: the native reader refuses to read it once changed
        size = st.st_size
        self.file_size, self.mtime_ns = size, st.st_mtime_ns
        self.reader_threads: int | None = None  # threads of the native batch reader (None: the default)
        need = self.offset + self.n_rows * self.row_bytes
        if size < need:
            os.close(self._fd)
            raise DataError(f"{self.path}: file is truncated ({size} bytes, the header promises {need})")

    # ---- lifetime ----------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        # the path and the header, with what the file was when the header was read; never the descriptor (a
        # number of this process's) nor the native reader (threads)
        state = {k: v for k, v in self.__dict__.items() if k not in ("_fd", "_native_reader")}
        state["closed"] = self._fd < 0
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        closed = state.pop("closed")
        self._fd = -1  # (for close() and __del__ if the file cannot be opened again)
        if closed:  # a closed table stays closed: its header as it was, no descriptor
            self.__dict__.update(state)
            return
        self.__init__(state["path"])
        seen = {k: state[k] for k in ("file_size", "mtime_ns", "dtype", "shape", "offset")}
        now = {k: getattr(self, k) for k in seen}
        if now != seen:
            self.close()
            raise DataError(f"{self.path}: the file changed since the table was opened (size {seen['file_size']}, "
                            f"modified at {seen['mtime_ns']} ns then; size {now['file_size']}, modified at "
                            f"{now['mtime_ns']} ns now): a copy of the table would read other rows; open it anew")
        self.reader_threads = state["reader_threads"]

    def close(self) -> None:
        self.__dict__.pop("_native_reader", None)  # its threads and its copies of the descriptor
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "NpyTable":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"NpyTable({self.path!r}, {self.n_rows} rows x {self.n_columns} columns, {self.dtype})"

    def __len__(self) -> int:
        return self.n_rows

    @property
    def n_inputs(self) -> int:
        """Input columns: all but the last (the target)."""
        return self.n_columns - 1

    @property
    def shards(self) -> list["NpyTable"]:
        """The files of the table: this one (a :class:`~wideann.data.shards.ShardSet` has several)."""
        return [self]

    @property
    def paths(self) -> list[str]:
        return [self.path]

    # ---- reading -----------------------------------------------------------------------------
    def _pread_into(self, buf: np.ndarray, start: int) -> None:
        """Fill ``buf`` (C-contiguous, the table's dtype) with the rows starting at ``start``."""
        if self._fd < 0:  # (as the native reader says it; os.preadv would say "Bad file descriptor")
            raise ValueError(f"{self.path}: the table is closed")
        mv = memoryview(buf).cast("B")
        pos, off = 0, self.offset + start * self.row_bytes
        while pos < len(mv):
            n = os.preadv(self._fd, [mv[pos:]], off + pos)
            if n <= 0:
                raise DataError(f"{self.path}: unexpected end of file at byte {off + pos} "
                                "(truncated while being read?)")
            pos += n

    def read_rows(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` as float32, shape ``(stop - start, n_columns)``."""
        out = rows_out(self, start, stop, out)
        n = stop - start
        if n == 0:
            return out
        if self.dtype == np.float32:
            self._pread_into(out, start)
        else:  # float16 (or float64): read the raw rows, convert into out
            raw = np.empty((n, self.n_columns), dtype=self.dtype)
            self._pread_into(raw, start)
            with np.errstate(over="ignore"):  # (a float64 value past float32's range: inf, which the checks refuse)
                out[...] = raw
        return out

    def read_index(self, rows: np.ndarray, out=None):
        """The rows with these (sorted) indices as float32; runs of consecutive rows are read in one go.

        With ``out=(x, y)``, two C-contiguous arrays in the table's own dtype of shapes ``(n, n_inputs)``
        and ``(n, 1)``, the native reader fills them instead (several threads, the inputs and the targets
        apart, no conversion): the path of the batch sources."""
        if isinstance(out, tuple):
            from .native_reader import read_into

            read_into(self, rows, *out)
            return out
        rows = np.asarray(rows, dtype=np.int64)
        if out is None:
            out = np.empty((rows.size, self.n_columns), dtype=np.float32)
        at = 0
        for a, b in runs_of(rows):
            self.read_rows(a, b, out[at:at + b - a])
            at += b - a
        return out


def runs_of(rows: np.ndarray) -> list[tuple[int, int]]:
    """Sorted row indices as runs ``[(start, stop), ...]`` of consecutive rows."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return []
    if rows.size > 1 and np.any(np.diff(rows) <= 0):
        raise ValueError("row indices must be strictly increasing")
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate(([0], breaks))
    stops = np.concatenate((breaks, [rows.size]))
    return [(int(rows[a]), int(rows[b - 1]) + 1) for a, b in zip(starts, stops)]


def _parse_header(fd: int, path: str):
    head = os.pread(fd, 10, 0)
    if len(head) < 10 or head[:6] != _MAGIC:
        raise DataError(f"{path}: not a .npy file (no NUMPY magic)")
    major = head[6]
    if major == 1:
        hlen, start = int.from_bytes(head[8:10], "little"), 10
    elif major in (2, 3):
        head = os.pread(fd, 12, 0)
        hlen, start = int.from_bytes(head[8:12], "little"), 12
    else:
        raise DataError(f"{path}: unsupported .npy format version {major}")
    text = os.pread(fd, hlen, start).decode("latin1" if major < 3 else "utf-8")
    try:
        meta = ast.literal_eval(text.strip())
        dtype = np.dtype(meta["descr"])
        fortran, shape = bool(meta["fortran_order"]), tuple(int(s) for s in meta["shape"])
    except Exception:
        raise DataError(f"{path}: unreadable .npy header {text.strip()!r}") from None
    if dtype.kind not in _FLOAT_KINDS or dtype.byteorder == ">" or dtype.itemsize not in (2, 4, 8):
        raise DataError(f"{path}: expected a little-endian float16/float32/float64 table, found {dtype}")
    if fortran:
        raise DataError(f"{path}: Fortran-ordered tables are not supported (rows must be contiguous)")
    if len(shape) != 2:
        raise DataError(f"{path}: expected a 2-D table (rows x columns), found shape {shape}")
    if min(shape) < 0:
        raise DataError(f"{path}: unreadable .npy header: negative shape {shape}")
    if shape[1] == 0:
        raise DataError(f"{path}: a table with no columns (shape {shape}): it needs a target column at least")
    return dtype, shape, start + hlen


def rows_out(table, start: int, stop: int, out: np.ndarray | None) -> np.ndarray:
    """The float32 array ``table.read_rows(start, stop, out)`` fills: ``out`` checked, or a new one."""
    if not 0 <= start <= stop <= table.n_rows:
        raise IndexError(f"{table.path}: rows [{start}, {stop}) out of range for {table.n_rows} rows")
    shape = (stop - start, table.n_columns)
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {shape}")
    return out
