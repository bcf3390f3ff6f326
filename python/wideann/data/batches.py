"""The out-of-core batch source of lessons 3 and 4: :class:`ShardedBatches`.

Per-epoch seeded shuffling of small runs of consecutive rows, one part of every global batch per
process, read ahead on a background thread into (pinned, when CUDA is present) memory.

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

import math
import os
import queue
import threading
from typing import Iterator, Sequence

import numpy as np

from .shards import open_table


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
        self.table = open_table(table) if isinstance(table, (str, os.PathLike, list, tuple)) else table
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
