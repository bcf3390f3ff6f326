"""Reading normalized ``.npy`` tables in batches, without holding them in memory.

A table made by ``wideann normalize`` is a C-ordered ``rows x columns`` array of float32 (or float16)
in a ``.npy`` file: the inputs in every column but the last, the target ``y`` in the last.

- :class:`NpyTable` parses the ``.npy`` header and reads any range of rows with ``os.preadv`` into a
  fresh buffer. It deliberately does not keep an ``np.memmap`` open: the pages of a live map count in the
  process's resident memory, so a loader holding one map over an 8 GB file shows 8 GB of RSS after an
  epoch. float16 tables are converted to float32 batch by batch.
- :func:`split_rows` splits row indices into train / validation / test sets, seeded, in blocks of
  consecutive rows so that the sets can be read from disk in large pieces.
- :class:`ShardedBatches` is the out-of-core batch source of lessons 3 and 4: per-epoch seeded
  shuffling of small runs of consecutive rows, one shard per process, reading ahead on a background
  thread into (pinned, when CUDA is present) memory.

How rows are shared between processes (the rule lessons 3-4 rely on)
--------------------------------------------------------------------
Every epoch has one global order of the training rows, which depends on the seed and the epoch only
(never on the number of processes). Step ``s`` of the epoch uses the rows at positions
``[s*G, (s+1)*G)`` of that order, where ``G = batch_size * world_size`` is the global batch; process
``r`` reads its own contiguous part of that slice. So every row is read by exactly one process once per
epoch (none twice, none skipped), and the rows that make up a global batch are the same whether one
process or eight read them. Every process runs the same number of steps, ``ceil(rows / G)``: the
remainder is not dropped or padded, the last global batch is simply short and is split as evenly as
possible (process batches differ by at most one row, and a process gets an empty batch when fewer rows
than processes are left). Lessons divide the summed loss by the nominal batch size, so a short batch
weighs exactly its rows.
"""
from __future__ import annotations

import ast
import math
import os
import queue
import threading
from typing import Iterator, NamedTuple, Sequence

import numpy as np

__all__ = ["NpyTable", "load_table", "split_rows", "Split", "ShardedBatches", "runs_of",
           "SPLIT_BLOCK_ROWS", "split_block_rows"]

_MAGIC = b"\x93NUMPY"
_FLOAT_KINDS = {"f"}

SPLIT_BLOCK_ROWS = 64
"""Rows are assigned to train / validation / test in blocks of at most this many consecutive rows."""


def split_block_rows(n_rows: int) -> int:
    """The block of :func:`split_rows` for a table of ``n_rows``: :data:`SPLIT_BLOCK_ROWS` rows, fewer
    on tables of under 6,400 rows, so that there are at least 100 blocks (every set within 1% of its
    fraction; one row per block below 200 rows). On a table of 442 rows, 64-row blocks would make 7
    blocks: a "20%" test set of 64 rows and only 7 possible test sets."""
    return max(1, min(SPLIT_BLOCK_ROWS, n_rows // 100))


class NpyTable:
    """A 2-D ``.npy`` table on disk, read by row ranges with ``os.preadv``.

    >>> with NpyTable("train.npy") as t:
    ...     first = t.read_rows(0, 100)          # float32 array (100, n_columns)

    Only the header is read when the table is opened; every ``read_*`` call reads exactly the bytes of
    the rows it returns into a new float32 array (or into ``out``).
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
        size = os.fstat(self._fd).st_size
        need = self.offset + self.n_rows * self.row_bytes
        if size < need:
            os.close(self._fd)
            raise ValueError(f"{self.path}: file is truncated ({size} bytes, the header promises {need})")

    # ---- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
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

    # ---- reading -----------------------------------------------------------------------------
    def _pread_into(self, buf: np.ndarray, start: int) -> None:
        """Fill ``buf`` (C-contiguous, the table's dtype) with the rows starting at ``start``."""
        mv = memoryview(buf).cast("B")
        pos, off = 0, self.offset + start * self.row_bytes
        while pos < len(mv):
            n = os.preadv(self._fd, [mv[pos:]], off + pos)
            if n <= 0:
                raise OSError(f"{self.path}: unexpected end of file at byte {off + pos}")
            pos += n

    def read_rows(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` as float32, shape ``(stop - start, n_columns)``."""
        if not 0 <= start <= stop <= self.n_rows:
            raise IndexError(f"{self.path}: rows [{start}, {stop}) out of range for {self.n_rows} rows")
        n = stop - start
        if out is None:
            out = np.empty((n, self.n_columns), dtype=np.float32)
        elif out.shape != (n, self.n_columns) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float32 array of shape {(n, self.n_columns)}")
        if n == 0:
            return out
        if self.dtype == np.float32:
            self._pread_into(out, start)
        else:  # float16 (or float64): read the raw rows, convert into out
            raw = np.empty((n, self.n_columns), dtype=self.dtype)
            self._pread_into(raw, start)
            out[...] = raw
        return out

    def read_index(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The rows with these (sorted) indices as float32; runs of consecutive rows are read in one go."""
        rows = np.asarray(rows, dtype=np.int64)
        if out is None:
            out = np.empty((rows.size, self.n_columns), dtype=np.float32)
        at = 0
        for a, b in runs_of(rows):
            self.read_rows(a, b, out[at:at + b - a])
            at += b - a
        return out


def load_table(path) -> np.ndarray:
    """The whole table as one float32 array (for small tables that fit in memory: lessons 1 and 2)."""
    with NpyTable(path) as t:
        return t.read_rows(0, t.n_rows)


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
        raise ValueError(f"{path}: not a .npy file (no NUMPY magic)")
    major = head[6]
    if major == 1:
        hlen, start = int.from_bytes(head[8:10], "little"), 10
    elif major in (2, 3):
        head = os.pread(fd, 12, 0)
        hlen, start = int.from_bytes(head[8:12], "little"), 12
    else:
        raise ValueError(f"{path}: unsupported .npy format version {major}")
    text = os.pread(fd, hlen, start).decode("latin1" if major < 3 else "utf-8")
    try:
        meta = ast.literal_eval(text.strip())
        dtype = np.dtype(meta["descr"])
        fortran, shape = bool(meta["fortran_order"]), tuple(int(s) for s in meta["shape"])
    except Exception:
        raise ValueError(f"{path}: unreadable .npy header {text.strip()!r}") from None
    if dtype.kind not in _FLOAT_KINDS or dtype.byteorder == ">" or dtype.itemsize not in (2, 4, 8):
        raise ValueError(f"{path}: expected a little-endian float16/float32/float64 table, found {dtype}")
    if fortran:
        raise ValueError(f"{path}: Fortran-ordered tables are not supported (rows must be contiguous)")
    if len(shape) != 2:
        raise ValueError(f"{path}: expected a 2-D table (rows x columns), found shape {shape}")
    return dtype, shape, start + hlen


# ---- splits ----------------------------------------------------------------------------------
class Split(NamedTuple):
    """Sorted row indices of each set."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_rows(n_rows: int, test_fraction: float = 0.2, val_fraction: float = 0.0, seed: int = 0,
               block_rows: int | None = None) -> Split:
    """Seeded split of rows ``0..n_rows-1`` into train / validation / test.

    Rows go in blocks of ``block_rows`` consecutive rows (default :func:`split_block_rows`: 64, fewer
    on small tables), so the sets are long runs on disk; the
    blocks are shuffled with ``seed``; the test set takes the first ``test_fraction`` of them, the
    validation set the next ``val_fraction``, training the rest. The test set depends only on
    ``n_rows``, ``test_fraction``, ``seed`` and ``block_rows``: lessons that add a validation set keep
    the same test rows.
    """
    if not (0 <= test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
        raise ValueError("fractions must be in [0, 1) and leave rows for training")
    if block_rows is None:
        block_rows = split_block_rows(n_rows)
    if n_rows < 1 or block_rows < 1:
        raise ValueError("need at least one row and block_rows >= 1")
    n_blocks = math.ceil(n_rows / block_rows)
    perm = np.random.default_rng(seed).permutation(n_blocks)
    n_test = int(round(test_fraction * n_blocks))
    n_val = int(round(val_fraction * n_blocks))
    if test_fraction > 0 and n_blocks >= 3:
        n_test = max(n_test, 1)
    if val_fraction > 0 and n_blocks >= 3:
        n_val = max(n_val, 1)
    if n_test + n_val >= n_blocks:
        raise ValueError(f"{n_rows} rows in {n_blocks} blocks of {block_rows} are too few to split")

    def rows_of(blocks):
        blocks = np.sort(blocks)
        r = (blocks[:, None] * block_rows + np.arange(block_rows)[None, :]).ravel()
        return r[r < n_rows]

    return Split(train=rows_of(perm[n_test + n_val:]), val=rows_of(perm[n_test:n_test + n_val]),
                 test=rows_of(perm[:n_test]))


# ---- the out-of-core batch source --------------------------------------------------------------
def _default_shuffle_rows(row_bytes: int) -> int:
    """Rows shuffled as one piece: about 256 KB of consecutive rows, at most 16 rows."""
    return int(min(16, max(1, (256 << 10) // max(row_bytes, 1))))


class ShardedBatches:
    """The batches one process trains on, read from a table on disk, ahead of use.

    ``rows`` are the table rows to use (e.g. ``split.train``); ``batch_size`` is per process, the
    global batch is ``batch_size * world_size``. See the module docstring for how the rows of an epoch
    are ordered and shared between processes. ``for x, y in source.epoch(e)`` gives float32 tensors
    ``x`` (inputs) and ``y`` (target, shape ``(n, 1)``); ``source.epoch(e, start_step=k)`` resumes an
    epoch at step ``k`` exactly as it would have gone on.

    Options: ``shuffle`` (per-epoch seeded order of runs of ``shuffle_rows`` consecutive rows; False
    keeps row order, for evaluation), ``prefetch`` (batches read ahead by a background thread; 0
    reads on the calling thread), ``pin_memory`` (default: when CUDA is available, so the copy to the
    GPU can overlap compute). ``rows_read`` counts the rows this process has read.
    """

    def __init__(self, table, rows: Sequence[int] | np.ndarray, batch_size: int, *, rank: int = 0,
                 world_size: int = 1, seed: int = 0, shuffle: bool = True,
                 shuffle_rows: int | None = None, prefetch: int = 4, pin_memory: bool | None = None):
        self.table = NpyTable(table) if isinstance(table, (str, os.PathLike)) else table
        self.rows = np.asarray(rows, dtype=np.int64)
        if self.rows.ndim != 1:
            raise ValueError("rows must be a 1-D array of row indices")
        if self.rows.size and (self.rows.min() < 0 or self.rows.max() >= self.table.n_rows):
            raise IndexError(f"{self.table.path}: row index out of range for {self.table.n_rows} rows")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world_size {world_size}")
        self.batch_size, self.rank, self.world_size = int(batch_size), int(rank), int(world_size)
        self.seed, self.shuffle, self.prefetch = int(seed), bool(shuffle), int(prefetch)
        self.shuffle_rows = int(shuffle_rows or _default_shuffle_rows(self.table.row_bytes))
        if pin_memory is None:
            import torch

            pin_memory = torch.cuda.is_available()
        self.pin_memory = bool(pin_memory)
        self.rows_read = 0

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        """Steps per epoch (the same on every process)."""
        return math.ceil(self.rows.size / self.global_batch_size)

    # -- the plan (pure functions of seed, epoch, step, rank; no I/O) --
    def epoch_order(self, epoch: int) -> np.ndarray:
        """All rows of the epoch in their global order (the same on every process)."""
        if not self.shuffle:
            return self.rows
        k = self.shuffle_rows
        n_pieces = math.ceil(self.rows.size / k)
        perm = np.random.default_rng([self.seed, int(epoch)]).permutation(n_pieces)
        pos = (perm[:, None] * k + np.arange(k)[None, :]).ravel()
        return self.rows[pos[pos < self.rows.size]]

    def step_rows(self, order: np.ndarray, step: int) -> np.ndarray:
        """This process's rows of ``step`` (sorted, so consecutive rows are read in one go)."""
        g = self.global_batch_size
        lo, hi = step * g, min((step + 1) * g, order.size)
        n = max(hi - lo, 0)
        if n == g:  # a full global batch: equal parts
            a, b = lo + self.rank * self.batch_size, lo + (self.rank + 1) * self.batch_size
        else:       # the short last one: parts differing by at most one row
            a, b = lo + (self.rank * n) // self.world_size, lo + ((self.rank + 1) * n) // self.world_size
        return np.sort(order[a:b])

    def shard(self, epoch: int) -> np.ndarray:
        """Every row this process reads in ``epoch`` (for checks and tests)."""
        order = self.epoch_order(epoch)
        return np.concatenate([self.step_rows(order, s) for s in range(len(self))] or [np.empty(0, np.int64)])

    # -- reading --
    def _load(self, rows: np.ndarray):
        import torch

        t = self.table
        data = torch.empty((rows.size, t.n_columns), dtype=torch.float32, pin_memory=self.pin_memory)
        t.read_index(rows, out=data.numpy())
        x, y = data[:, :-1], data[:, -1:]
        if self.pin_memory:
            # For the GPU: contiguous pinned tensors, so ``.to(device, non_blocking=True)`` is one DMA copy.
            xc = torch.empty(x.shape, dtype=torch.float32, pin_memory=True)
            yc = torch.empty(y.shape, dtype=torch.float32, pin_memory=True)
            return xc.copy_(x), yc.copy_(y)
        # On the CPU the inputs stay a view of the buffer (no copy): matrix multiplication takes the
        # strided rows as they are. The target gets its own small tensor, so that keeping the targets
        # of many batches (to compute metrics) does not keep their whole buffers alive.
        return x, y.clone()

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator:
        """Yield ``(x, y)`` for steps ``start_step .. len(self)-1`` of ``epoch``."""
        order = self.epoch_order(epoch)
        steps = range(int(start_step), len(self))
        if self.prefetch <= 0:
            for s in steps:
                rows = self.step_rows(order, s)
                self.rows_read += rows.size
                yield self._load(rows)
            return
        yield from self._prefetched(order, steps)

    def _prefetched(self, order, steps):
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    pass
            return False

        def reader():
            try:
                for s in steps:
                    rows = self.step_rows(order, s)
                    if not put((rows.size, self._load(rows))):
                        return
                put(done)
            except BaseException as e:  # handed to the consumer, raised there
                put(_Failure(e))

        th = threading.Thread(target=reader, name="wideann-prefetch", daemon=True)
        th.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                n, batch = item
                self.rows_read += n
                yield batch
        finally:
            stop.set()
            th.join()


class _Failure:
    """An exception raised on the reader thread, carried to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error
