"""Glue to the native batch reader (``wideann._native.BatchReader``, ``csrc/batch_reader.cpp``).

:func:`read_into` reads the rows of a batch of a table (an :class:`~wideann.data.npy.NpyTable` or a
:class:`~wideann.data.shards.ShardSet`) straight into two caller-owned buffers in the table's dtype: the
inputs into ``x`` (``n x n_inputs``), the targets into ``y`` (``n x 1``). Several threads, the GIL
released, one ``preadv`` per run of consecutive rows, no conversion and no second copy -- except that a
float16 table read into float32 buffers is converted by the reading threads as they go (F16C where the
CPU has it: the CPU path, where the model wants float32). A truncated file
or a file written in place since its header was read raises :class:`wideann.DataError`.

The reader (its descriptors and its thread pool) is made on first use and kept on the table; its thread
count is the table's ``reader_threads`` (default :func:`default_threads`).

:class:`ReadAhead` reads batches ahead for the batch sources: ``submit`` queues a batch and returns at
once, ``wait`` blocks (the GIL released) until it is read. The reading runs on a C++ thread of its own, so
no Python thread competes with the training loop for the GIL (see ``csrc/read_ahead.cpp``).
"""
from __future__ import annotations

import contextlib
import operator
import os

import numpy as np

from .._native_checked import _native


def default_threads() -> int:
    """Threads that read a batch: the cores this process may use, at most 8 (page-cache reads stop
    scaling there: ~23 GB/s measured on a 16-core host)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores))


def reader_of(table) -> "_native.BatchReader":
    """The table's native reader, made on first use (again in a forked child: threads do not survive
    a fork)."""
    threads = int(getattr(table, "reader_threads", None) or default_threads())
    key = (os.getpid(), threads)
    cached = table.__dict__.get("_native_reader")
    if cached is not None and cached[0] == key:
        return cached[1]
    specs = []
    for t in table.shards:
        if t._fd < 0:
            raise ValueError(f"{t.path}: the table is closed")
        specs.append((t._fd, os.fsencode(t.path), t.offset, t.n_rows, t.file_size, t.mtime_ns))  # (bytes: any name)
    reader = _native.BatchReader(specs, table.n_columns, table.dtype.itemsize, threads)
    table.__dict__["_native_reader"] = (key, reader)
    return reader


def read_into(table, rows, x: np.ndarray, y: np.ndarray, batches=()) -> None:
    """Rows (global row numbers: strictly increasing, or within each of ``batches``) into ``x`` (inputs) and
    ``y`` (targets), both in the table's dtype, or both float32 for a float16 table. With ``batches`` (sizes
    adding up to the rows), the rows are several batches one after the other, each strictly increasing: read
    in one call, into ``x`` and ``y`` one after the other as well."""
    rows, batches = _checked(table, rows, x, y, batches)
    if rows.size == 0:
        return
    with _rows_of(table):
        reader_of(table).read(rows, x, y, batches)


def _checked(table, rows, x: np.ndarray, y: np.ndarray, batches=()) -> tuple[np.ndarray, list]:
    """``(rows, batches)``: ``rows`` as contiguous int64 and ``batches`` as a list of ints, once ``x`` and ``y``
    are known to fit the rows (shapes and dtypes) and the batches' sizes to add up to them."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    n = rows.size
    if x.shape != (n, table.n_inputs) or y.shape != (n, 1):
        raise ValueError(f"x must have shape {(n, table.n_inputs)} and y {(n, 1)}, got {x.shape} and {y.shape}")
    f16_to_f32 = table.dtype == np.float16 and x.dtype == y.dtype == np.float32
    if not f16_to_f32 and (x.dtype != table.dtype or y.dtype != table.dtype):
        raise ValueError(f"x and y must hold the table's dtype {table.dtype} (or float32 for a float16 table)")
    batches = [operator.index(b) for b in batches]  # (a float or a string: TypeError)
    if batches and (min(batches) < 0 or sum(batches) != n):
        raise ValueError(f"the batches' sizes must be 0 or more and add up to the {n} rows given, got {batches}")
    return rows, batches


@contextlib.contextmanager
def _rows_of(table):
    """A row number out of range, said with the table's path."""
    try:
        yield
    except IndexError:
        raise IndexError(f"{table.path}: row index out of range for {table.n_rows} rows") from None


class ReadAhead:
    """Batches of ``table`` read ahead, in the order submitted, by a native thread of their own.

    >>> ahead = ReadAhead(table)
    >>> ticket = ahead.submit(rows, x, y)   # returns at once; x and y are filled as read_into fills them
    >>> ahead.submit(rows, x, y, sizes)     # (a group of batches, one read: see read_into's batches)
    >>> ahead.wait(ticket)                  # until that batch is read; raises its DataError
    >>> ahead.close()                       # drops the batches not started (also on garbage collection)

    The buffers of a batch must not be used before its wait; they are held (kept alive) until then.
    """

    def __init__(self, table):
        self.table = table
        self._native = _native.ReadAhead(reader_of(table))

    def submit(self, rows, x: np.ndarray, y: np.ndarray, batches=()) -> int:
        rows, batches = _checked(self.table, rows, x, y, batches)
        with _rows_of(self.table):
            return self._native.submit(rows, x, y, batches)

    def wait(self, ticket: int) -> None:
        self._native.wait(ticket)

    @property
    def queued(self) -> int:
        """Batches submitted and not yet waited for."""
        return self._native.queued

    def close(self) -> None:
        self._native.cancel()
