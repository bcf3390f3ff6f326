"""The out-of-core batch source of lessons 3 and 4: :class:`ShardedBatches`.

Per-epoch seeded shuffling of small runs of consecutive rows, one part of every global batch per
process. Where the rows come from (the tier) does not change which rows a batch holds:

- streamed (the default): the native reader reads each batch ahead on a C++ thread of its own
  (:class:`~wideann.data.native_reader.ReadAhead`; several threads, one ``preadv`` per run of rows, inputs and
  targets into their own buffers), so no Python thread competes with the training loop for the GIL: the loop
  only queues the next batch and waits (the GIL released) for the one it needs. A shuffled (training) source
  reads on into the next epoch as an epoch ends, so the next one does not begin by waiting for a read. Batches
  for the CPU are new tensors whose memory is recycled once nothing uses it. Batches for a GPU travel in
  groups of consecutive steps (:data:`GROUP_BYTES`) through a small ring of reusable pinned blocks
  (:class:`~wideann.data.pinned_ring.PinnedRing`), inputs and targets side by side, each group copied to the
  device in one copy on a side CUDA stream, so the copy of the next group overlaps the compute on this one
  (it is started before this group's batches are handed over); the copy lands in memory of the training
  stream, which waits for the copy's event, and each step's batch is a view of its group.
- resident (``resident=``, a :class:`~wideann.data.resident.ResidentRows`): the rows are already in the
  device's memory and the batches are gathered there (``index_select``, one per group of steps:
  :data:`RESIDENT_GROUP_BYTES`), with no thread and no copy.

Tables in float16 travel as float16 (2 bytes a value read, pinned and copied) and are converted to
float32 (``dtype``) where the batch is delivered: on the GPU after the copy; on a CPU by the native
reader's threads as they read (a CPU multiplies float32 far faster than float16; the conversion is
spread over the reading threads, off the training thread, with F16C where the CPU has it). With
``dtype=None`` (lesson 4 under mixed precision) the inputs keep the table's dtype and the targets are
float32.

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
from collections import deque
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from .host_pool import BlockPool
from .native_reader import ReadAhead
from .resident import resolve_device, torch_dtype
from .shards import open_table
# (whole numbers only: int() would make 4 of a batch size of 4.9, and 2 of a world size of 2.5 checked against rank 2)
from .splits import _whole


GROUP_BYTES = 64 << 20
"""On a GPU, streamed batches travel in groups of consecutive steps of about this many bytes of table rows
(at least one step, at most an epoch): one copy from the pinned ring for the whole group, and each step's
batch a view of it. A step on a GPU is bound by the host's time to launch its work (2.5 ms for lesson 4's
model on an H100, whatever the batch size), so every operation the data path launches per step comes off
the training's speed; per group, they cost next to nothing. (The ring holds a few groups of page-locked
host memory: 5 slots at the default read-ahead, 7 where a group is a single step (a step of over half of
this); a slot holds a group's rows in the table's dtype, and a group is sized by the larger of a row's
bytes in the table and as delivered, so a float16 table delivered as float32 has slots of about half of
this.)"""

PLAN_POSITIONS = 1 << 20
"""The resident tier plans as many epochs ahead as make about this many positions of rows (8 MB on the device
for the plan, a few times that while it is made), at most :data:`PLAN_EPOCHS`: see ``ShardedBatches._planned``."""

PLAN_EPOCHS = 64

RESIDENT_GROUP_BYTES = 256 << 20
"""The same for the resident tier: one gather per group of steps. Larger, as it costs device memory only
(at most about 2.5 x this: see ``ShardedBatches._gathered``), no page-locked host memory."""


class _Groups:
    """The rows of an epoch's steps from a step on, ``size`` steps at a time (the last group may be shorter):
    an iterator of ``(rows, sizes)``, a group's steps' rows one after the other (each step's sorted) and how
    many each step has, the plan made by ``make() -> (flat, sizes, made_for)`` on first use
    (``ShardedBatches._groups``; ``made_for``: the settings, rows and table it was made for). Once started it
    holds no reference to the batch source (a :class:`_Carry` keeps one)."""

    def __init__(self, make, size: int):
        self._make, self.size, self._at, self.made_for = make, int(size), 0, None

    def __iter__(self):
        return self

    def __next__(self) -> tuple:
        if self._make is not None:
            self._flat, self._sizes, self.made_for = self._make()
            self._make, self._bounds = None, np.cumsum([0] + self._sizes).tolist()
        b, a = self._bounds, self._at
        z = min(a + self.size, len(b) - 1)
        if a >= z:
            raise StopIteration
        self._at = z
        return self._flat[b[a]:b[z]], self._sizes[a:z]


class _Carry(NamedTuple):
    """The first steps of ``epoch``, read on by the iterator of the epoch before: ``ahead`` reads them,
    ``pending`` holds them in order, ``(ticket, x, y, tag, sizes)`` per group of steps, and ``rest`` gives the
    epoch's later groups (its plan, made once: by the epoch before, as it read on; a started ``_Groups``).
    (No reference to the batch source: a source with batches read on is freed, and its reading thread
    stopped, as soon as it is let go.)"""
    epoch: int
    ahead: ReadAhead
    pending: deque
    rest: _Groups


def _drop_read_on(kit: dict) -> None:
    """Drops the batches read on that ``kit`` holds, if any, and stops their reading."""
    if (carry := kit.pop("carry", None)) is not None:
        carry.ahead.close()


def _row_indices(rows) -> np.ndarray:
    """``rows`` as an array, refused (a :class:`TypeError`) unless they are integers: floats would be cut to the
    row below (1.9 -> 1), and a boolean mask read as the rows 0 and 1."""
    a = np.asarray(rows)
    if a.dtype.kind == "b":
        raise TypeError("rows must be row indices, not a boolean mask: give np.flatnonzero(mask)")
    if a.dtype.kind not in "iu" and a.size:
        raise TypeError(f"rows must be integer row indices, got {a.dtype} values")
    return a


def _delivered_dtype(dtype):
    """The torch dtype of the delivered batches (None stays None): a floating torch dtype, or its name
    ("float32") or numpy's (``np.float32``); anything else is refused (a :class:`ValueError`), integers
    included (the batches would be cut to whole numbers)."""
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        got = dtype
    elif isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype):
        got = getattr(torch, dtype)
    else:
        try:
            got = torch.from_numpy(np.empty(0, np.dtype(dtype))).dtype if not isinstance(dtype, str) else None
        except (TypeError, ValueError):
            got = None
        if got is None:
            raise ValueError(f"dtype must be a floating dtype such as 'float32' or torch.float16 (or None), got "
                             f"{dtype!r}")
    if got is not None and not got.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype (batches of {got} would be cut to whole numbers), got "
                         f"{dtype!r}")
    return got


def _at_least(value, name: str, least: int, hint: str = "") -> int:
    """``value`` as an int if it is a whole number of at least ``least``: else a :class:`TypeError` (not whole:
    :func:`~wideann.data.splits._whole`) or a :class:`ValueError` naming it."""
    whole = _whole(value, name)
    if whole < least:
        raise ValueError(f"{name} must be {least} or more{hint}, got {whole}")
    return whole


_PREFETCH_HINT = " (0: read on the calling thread)"


def _default_shuffle_rows(row_bytes: int) -> int:
    """Rows shuffled as one piece: about 256 KB of consecutive rows, at most 16 rows."""
    return int(min(16, max(1, (256 << 10) // max(row_bytes, 1))))


class ShardedBatches:
    """The batches one process trains on, read from a table on disk, ahead of use.

    ``table`` is an :class:`~wideann.data.npy.NpyTable`, a :class:`~wideann.data.shards.ShardSet`, or
    a path / folder / list of ``.npy`` shards. ``rows`` are the table rows to use (e.g. ``split.train``);
    ``batch_size`` is per process, the global batch is ``batch_size * world_size``. See the module
    docstring for how the rows of an epoch are ordered and shared between processes. ``for x, y in
    source.epoch(e)`` gives tensors ``x`` (inputs) and ``y`` (target, shape ``(n, 1)``), float32 unless
    ``dtype`` says otherwise; ``source.epoch(e, start_step=k)`` resumes an epoch at step ``k`` exactly as
    it would have gone on.

    Options: ``shuffle`` (per-epoch seeded order of runs of ``shuffle_rows`` consecutive rows; False keeps row
    order, for evaluation), ``prefetch`` (batches read ahead by the native reader's own thread, on into the
    first steps of the next epoch when shuffled; 0 reads on the calling thread; batches for a GPU are always
    read ahead, at least two groups of steps), ``device`` (where batches are
    delivered: None or a CPU device gives CPU tensors; a CUDA device gives tensors on it, through reusable
    pinned buffers and a side-stream copy), ``resident`` (a :class:`~wideann.data.resident.ResidentRows`
    holding the rows on ``device``: batches are gathered there), ``pin_memory`` (without ``device``: CPU
    batches in fresh pinned memory, default when CUDA is available, for ``x.to(device, non_blocking=True)``),
    ``reader_threads`` (threads of the native reader; default
    :func:`~wideann.data.native_reader.default_threads`), ``dtype`` (of the delivered batches; None keeps the
    table's for the inputs, and gives float32 targets). ``rows_read`` counts the rows of the batches handed
    out. Batches stay valid after the next one: keeping them is safe. (On a GPU, a step's ``x`` is a view of
    its group's memory (see :data:`GROUP_BYTES`), which a kept ``x`` keeps; a ``y`` holds only targets.)

    A pickled (or copied) source holds its table (opened anew by its path where it is unpickled: see
    :class:`~wideann.data.npy.NpyTable`), its rows and its settings, and ``rows_read``; not what it made to
    read (pinned buffers, reading threads, buffer pools, plans, batches read on into the next epoch), which
    the copy makes anew on first use. A source with ``resident`` rows (in this process's device memory) is
    not pickled (a :class:`TypeError`).
    """

    _KITS = ("_gpu_kit", "_host_kit", "_pool", "_plan_kit", "_positions_kit")
    """What a source makes to read, kept between epochs: this process's, never in a pickle or a copy."""

    def __init__(self, table, rows: Sequence[int] | np.ndarray, batch_size: int, *, rank: int = 0,
                 world_size: int = 1, seed: int = 0, shuffle: bool = True,
                 shuffle_rows: int | None = None, prefetch: int = 4, pin_memory: bool | None = None,
                 device=None, resident=None, reader_threads: int | None = None, dtype="float32"):
        # (the numbers first: nothing is opened for a source refused)
        batch_size, rank, world_size, seed, prefetch = self._checked(batch_size, rank, world_size, seed, prefetch)
        if shuffle_rows is not None:  # (0 is no run length: refused, not taken for the default)
            _at_least(shuffle_rows, "shuffle_rows", 1, " (None: the default)")
        if reader_threads is not None and _whole(reader_threads, "reader_threads") < 1:
            raise ValueError(f"reader_threads must be 1 or more (None: the default), got {reader_threads}")
        dtype = _delivered_dtype(dtype)
        rows = _row_indices(rows)
        self.table = open_table(table) if isinstance(table, (str, os.PathLike, list, tuple)) else table
        # a read-only copy: a plan made, or batches read on, are checked against the rows by identity, so rows
        # changed in place would go unnoticed (the caller's array is left as it is)
        self.rows = np.array(rows, dtype=np.int64)
        self.rows.flags.writeable = False
        if self.rows.ndim != 1:
            raise ValueError("rows must be a 1-D array of row indices")
        if self.rows.size and (self.rows.min() < 0 or self.rows.max() >= self.table.n_rows):
            raise IndexError(f"{self.table.path}: row index out of range for {self.table.n_rows} rows")
        if not (np.diff(self.rows) > 0).all() and np.unique(self.rows).size != self.rows.size:  # (sorted: one pass)
            raise ValueError("rows must be distinct: a row given twice would be read twice an epoch")
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.seed, self.shuffle, self.prefetch = seed, bool(shuffle), prefetch
        self.shuffle_rows = int(shuffle_rows or _default_shuffle_rows(self.table.row_bytes))
        import torch

        self.device = resolve_device(device) if device is not None else None
        self.cuda = self.device is not None and self.device.type == "cuda"
        if pin_memory is None:
            pin_memory = self.cuda or (self.device is None and torch.cuda.is_available())
        self.pin_memory = bool(pin_memory)
        self.resident = resident
        self._check_resident()
        if reader_threads is not None:
            self.table.reader_threads = int(reader_threads)
        self.dtype = dtype
        self.group_bytes = RESIDENT_GROUP_BYTES if resident is not None else GROUP_BYTES
        self.rows_read = 0

    def __getstate__(self) -> dict:
        if self.resident is not None:
            raise TypeError("a ShardedBatches with resident rows cannot be pickled or copied: the rows are held in "
                            "this process's device memory; make the copy's source with resident rows of its own")
        return {k: v for k, v in self.__dict__.items() if k not in self._KITS}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.rows = self.rows.copy()  # (an unpickled array is writeable: read-only again, as __init__ makes it)
        self.rows.flags.writeable = False

    def _check_settings(self) -> None:
        """The settings as they are now, checked where they are used (:meth:`epoch_order`, :meth:`epoch`,
        ``len()``): they may be set as attributes between epochs (see :meth:`_plan_settings`), after
        ``__init__`` checked them. Unchecked, a seed of -3 gave numpy's bare "expected non-negative integer",
        a seed of 2.5 "seed must be integer", a prefetch of -1 was read as 0 and a batch size of 4.9 made a
        fractional number of steps."""
        self._checked(self.batch_size, self.rank, self.world_size, self.seed, self.prefetch)
        _at_least(self.shuffle_rows, "shuffle_rows", 1)

    @staticmethod
    def _checked(batch_size, rank, world_size, seed, prefetch) -> tuple:
        """The numeric settings as ints, each checked (:func:`_at_least`: a :class:`TypeError` when not whole, a
        :class:`ValueError` out of range), by ``__init__`` and again where they are used (:meth:`_check_settings`)."""
        batch_size = _at_least(batch_size, "batch_size", 1)
        rank, world_size = _whole(rank, "rank"), _whole(world_size, "world_size")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world_size {world_size}")
        seed, prefetch = _at_least(seed, "seed", 0), _at_least(prefetch, "prefetch", 0, _PREFETCH_HINT)
        return batch_size, rank, world_size, seed, prefetch

    def _check_resident(self) -> None:
        """Resident rows must be this table's on this source's device (checked again at each epoch: the source's
        ``device`` or ``table`` may have been set since)."""
        store = self.resident
        if store is not None and (self.device is None or store.device != self.device or store.table is not self.table):
            raise ValueError("resident rows must hold this table on this source's device")

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        """Steps per epoch (the same on every process)."""
        self._check_settings()
        return math.ceil(self.rows.size / self.global_batch_size)

    @property
    def tier(self) -> str:
        """Where the batches come from: "resident" or "stream"."""
        return "resident" if self.resident is not None else "stream"

    # -- the plan (pure functions of seed, epoch, step, rank; no I/O) --
    def epoch_order(self, epoch: int) -> np.ndarray:
        """All rows of the epoch in their global order (the same on every process)."""
        _at_least(epoch, "epoch", 0)
        self._check_settings()
        return self.rows[self._epoch_index(epoch)] if self.shuffle else self.rows

    def _plan_settings(self) -> tuple:
        """What an epoch's plan depends on besides the epoch and the rows: a plan made, or batches read on,
        under other settings (a seed, batch size or process changed between epochs) are not used."""
        return self.seed, self.shuffle, self.shuffle_rows, self.batch_size, self.rank, self.world_size

    def _made_for(self) -> tuple:
        """What a plan is made for: the plan's settings, and the rows and the table (by identity)."""
        return self._plan_settings(), self.rows, self.table

    def _still(self, made_for: tuple) -> bool:
        """Whether a plan made for ``made_for`` (:meth:`_made_for`) is this source's now."""
        settings, rows, table = made_for
        return settings == self._plan_settings() and rows is self.rows and table is self.table

    def _pieces(self, epoch: int) -> np.ndarray:
        """The epoch's order of the pieces of ``shuffle_rows`` consecutive rows (piece ``p``: positions
        ``p*k .. p*k+k-1`` of ``rows``, the last one short when ``k`` does not divide them)."""
        return np.random.default_rng([self.seed, int(epoch)]).permutation(math.ceil(self.rows.size / self.shuffle_rows))

    def _epoch_index(self, epoch: int) -> np.ndarray:
        """The epoch's global order of a shuffled source, as positions in ``rows``."""
        k = self.shuffle_rows
        pos = (self._pieces(epoch)[:, None] * k + np.arange(k)[None, :]).ravel()
        return pos[pos < self.rows.size]

    def step_rows(self, order: np.ndarray, step: int) -> np.ndarray:
        """This process's rows of ``step`` (sorted, so consecutive rows are read in one go)."""
        g = self.global_batch_size
        lo, hi = step * g, min((step + 1) * g, order.size)
        n = max(hi - lo, 0)
        a, b = self._part(lo, n)
        # (stable: a merge sort takes the runs of consecutive rows as they come, 3x faster at 4096 rows than
        # the default quicksort on the training thread; the same result, rows being distinct integers)
        return np.sort(order[a:b], kind="stable")

    def _part(self, lo: int, n: int) -> tuple[int, int]:
        """This process's part ``[a, b)`` of the ``n`` rows of a step's global batch, at ``lo`` in the order."""
        if n == self.global_batch_size:  # a full global batch: equal parts
            return lo + self.rank * self.batch_size, lo + (self.rank + 1) * self.batch_size
        # the short last one: parts differing by at most one row
        return lo + (self.rank * n) // self.world_size, lo + ((self.rank + 1) * n) // self.world_size

    def _steps(self, order: np.ndarray, start: int = 0) -> tuple[np.ndarray, list]:
        """``step_rows(order, s)`` of every step ``s`` from ``start``, in one go: ``(flat, sizes)``, the steps'
        rows one after the other and how many each has. The full global batches are sorted by one call (a
        2-D sort, row by row), the short last one by ``step_rows``: the plan of a whole epoch is a small
        part of one step's time (one sort call per step took milliseconds an epoch, which at 5 steps an
        epoch was 15% of the training's speed on an H100)."""
        g, b, r = self.global_batch_size, self.batch_size, self.rank
        full = order.size // g  # steps with a full global batch
        parts, sizes = [], []
        if start < full:
            mine = order[start * g:full * g].reshape(full - start, g)[:, r * b:(r + 1) * b]
            parts.append(np.sort(mine, axis=1, kind="stable").ravel())
            sizes += [b] * (full - start)
        for s in range(max(start, full), len(self)):
            parts.append(self.step_rows(order, s))
            sizes.append(parts[-1].size)
        flat = np.concatenate(parts) if parts else np.empty(0, dtype=order.dtype)
        return flat, sizes

    def shard(self, epoch: int) -> np.ndarray:
        """Every row this process reads in ``epoch`` (for checks and tests)."""
        order = self.epoch_order(epoch)
        return np.concatenate([self.step_rows(order, s) for s in range(len(self))] or [np.empty(0, np.int64)])

    # -- reading --
    def epoch(self, epoch: int, start_step: int = 0, *, read_on: bool = True) -> Iterator:
        """Yield ``(x, y)`` for steps ``start_step .. len(self)-1`` of ``epoch``. ``read_on=False``: the first
        batches of the next epoch are not read on as this one ends (a shuffled, streamed source reads them on
        otherwise: for an epoch known to be the last, or to time epochs that each begin cold)."""
        epoch, start = _whole(epoch, "epoch"), _whole(start_step, "start_step")
        if epoch < 0:
            raise ValueError(f"epoch must be 0 or more, got {epoch}")
        if start < 0:
            raise ValueError(f"start_step must be 0 or more, got {start}")
        self._check_settings()  # (at the call, as the epoch: not at the first batch)
        return self._batches(epoch, start, read_on)

    def _batches(self, epoch: int, start: int, read_on: bool) -> Iterator:
        """The batches of :meth:`epoch` (its arguments checked)."""
        if self.resident is not None:
            self._check_resident()
            yield from self._gathered(epoch, start)  # (nothing to read on: the rows are on the device)
        elif self.cuda:
            yield from self._to_gpu(epoch, start, read_on)
        else:
            yield from self._on_host(epoch, start, read_on)

    def _groups(self, epoch: int, start: int, size: int) -> _Groups:
        """The rows of steps ``start ..`` of ``epoch``, ``size`` steps at a time (the last group may be shorter)."""
        return _Groups(lambda: (*self._steps(self.epoch_order(epoch), start), self._made_for()), size)

    @property
    def group_steps(self) -> int:
        """Steps whose batches travel to a GPU together (see :data:`GROUP_BYTES`): as many as fit in
        ``group_bytes`` (default :data:`GROUP_BYTES`, :data:`RESIDENT_GROUP_BYTES` for the resident tier), at
        least one, at most an epoch's."""
        delivered = self.table.n_inputs * self._out_dtype().itemsize + self._target_dtype().itemsize
        fit = self.group_bytes // max(1, self._most_rows * max(self.table.row_bytes, delivered))
        return int(max(1, min(len(self), fit)))

    @property
    def _ahead_groups(self) -> int:
        """Groups the GPU path reads ahead: at least ``prefetch`` batches, and at least two groups. It copies a
        group to the device before it hands out the steps of the one before, so it asks for two groups before
        an epoch's first step: with one group read on into an epoch, the second was read from scratch while
        the GPU waited, at every epoch's start. (That was the case where a group holds ``prefetch`` steps or
        more: batch 256 of the reference width in float16, 10 steps a group, a read of 66 MB, about 3 ms on
        an H100's host, once an epoch.)"""
        return max(2, -(-max(1, self.prefetch) // self.group_steps))

    def _out_dtype(self):
        return self.dtype if self.dtype is not None else torch_dtype(self.table.dtype)

    def _target_dtype(self):
        """The targets' dtype: ``dtype``, or float32 when the inputs keep the table's (under mixed
        precision): the loss is computed in float32 (autocast on a CPU does not convert the targets, and
        a float16 ``y`` beside a float32 prediction fails in the backward pass), and ``y`` is a 12,848th
        of the bytes."""
        import torch

        return self.dtype if self.dtype is not None else torch.float32

    @property
    def _most_rows(self) -> int:
        """Rows of this process's largest step (at least 1): what a reused batch buffer must hold."""
        return max(1, min(self.batch_size, -(-self.rows.size // self.world_size)))

    def _on_host(self, epoch, start, read_on=True):
        """Batches as new CPU tensors, read ``prefetch`` batches ahead by the native reader's own thread
        (:class:`~wideann.data.native_reader.ReadAhead`: no Python thread beside the training loop), or on
        the calling thread when ``prefetch`` is 0. The inputs' memory comes from a
        :class:`~wideann.data.host_pool.BlockPool`, recycled once nothing uses it (no page faults per
        batch); pinned ones (``pin_memory``) are fresh. A float16 table is converted to float32 by the
        reader; other pairs of dtypes are read in the table's dtype, then converted."""
        import torch

        t, out, target = self.table, self._out_dtype(), self._target_dtype()
        raw = torch_dtype(t.dtype)
        read = out if raw == out or (raw == torch.float16 and out == torch.float32) else raw  # what the reader gives
        need = self._most_rows * t.n_inputs * read.itemsize
        pool = self.__dict__.get("_pool")
        if pool is None or pool.nbytes != need:  # (again where the batch size or the dtype changed)
            pool = self.__dict__["_pool"] = BlockPool.shared(need, self.prefetch + 3)
        np_read = torch.empty(0, dtype=read).numpy().dtype

        def buffers(n):
            if self.pin_memory:  # page-locked memory is made by torch (fresh: the copy to the GPU reads it)
                return (torch.empty((n, t.n_inputs), dtype=read, pin_memory=True),
                        torch.empty((n, 1), dtype=read, pin_memory=True))
            # targets: small, and often kept (metrics), so not from the pool
            return torch.from_numpy(pool.array((n, t.n_inputs), np_read)), torch.empty((n, 1), dtype=read)

        def delivered(x, y):
            return x.to(out), y.to(target)  # (no copy where the dtype is already right)

        if self.prefetch <= 0:
            _drop_read_on(self.__dict__.get("_host_kit") or {})  # (read on while prefetch was on: not kept for nothing)
            for rows, _ in self._groups(epoch, start, 1):
                x, y = buffers(rows.size)
                t.read_index(rows, (x.numpy(), y.numpy()))
                self.rows_read += rows.size
                yield delivered(x, y)
            return
        kit = self.__dict__.setdefault("_host_kit", {})  # where batches read on into the next epoch wait
        for x, y, _, _ in self._read_ahead(epoch, start, lambda n: (*buffers(n), None), self.prefetch, kit,
                                           read_on=read_on):
            self.rows_read += x.shape[0]
            yield delivered(x, y)

    def _read_ahead(self, epoch, start, buffers, depth: int, kit: dict, group: int = 1, read_on: bool = True):
        """``(x, y, tag, sizes)`` of every group of ``group`` steps from ``start`` of ``epoch`` in turn (the last
        group may be shorter; ``sizes``: the rows of its steps, whose batches lie one after the other in ``x``
        and ``y``), read ``depth`` groups ahead by the native reader's own thread into ``buffers(n) -> (x, y,
        tag)`` (host tensors of ``n`` rows; ``tag`` is the caller's, e.g. a ring slot). The rows of a group are
        waited for (the GIL released) just before it is handed out, and a read error is raised there, in
        place of the group: with groups of one step (the CPU path) at the failing step; on the GPU path, which
        asks for a group before it hands out the steps of the one before, up to two groups early. No batch
        of the failing group or after it is handed out.

        A shuffled source reads on: once the last groups of this epoch are being read, the first ones of
        the next epoch are, so that the next epoch does not begin by waiting for a read. They are left in
        ``kit`` (the caller's, with the buffers they fill) when this epoch ends -- once its last group is
        handed out, even if the consumer does not ask for more (``itertools.islice``) -- and handed out if
        the next epoch is asked for from its first step; otherwise they are dropped. An unshuffled source
        (evaluation, read once or always from its start) does not read on, nor does an epoch asked for with
        ``read_on=False``."""
        carry = kit.pop("carry", None)
        if carry is not None and carry.epoch == epoch and start == 0 and self._still(carry.rest.made_for):
            ahead, pending, plan = carry.ahead, carry.pending, carry.rest
            if plan.size != group:  # (the group size changed: the rest planned anew, from where the carry ends)
                plan = self._groups(epoch, sum(len(p[-1]) for p in pending), group)
        else:
            if carry is not None:
                carry.ahead.close()  # (its thread stops when it is let go, below)
            ahead, pending, plan = ReadAhead(self.table), deque(), self._groups(epoch, start, group)
        del carry
        after = self._groups(epoch + 1, 0, group) if self.shuffle and read_on else iter(())
        following: deque = deque()  # groups of the next epoch being read

        def submit() -> None:
            queue, steps = pending, next(plan, None)
            if steps is None:
                queue, steps = following, next(after, None)
            if steps is not None:
                rows, sizes = steps
                x, y, tag = buffers(rows.size)
                # one read for the group's steps (each sorted): a call and a wait per group, not per step
                queue.append((ahead.submit(rows, x.numpy(), y.numpy(), sizes), x, y, tag, sizes))

        ended = False
        try:
            for _ in range(depth - len(pending)):
                submit()
            while pending:
                ticket, x, y, tag, sizes = pending.popleft()
                ahead.wait(ticket)
                submit()
                ended = not pending  # this epoch's last group: the epoch is over once it is handed out
                yield x, y, tag, sizes
            ended = True
        finally:
            if ended and following:
                # (its first steps, in order; `after` has started: `following` holds groups it gave)
                kit["carry"] = _Carry(epoch + 1, ahead, following, after)
            else:
                ahead.close()  # batches not started are dropped, the one being read is waited for

    def _gathered(self, epoch, start):
        """The resident tier: every batch of the epoch gathered from the rows held on the device, a group of
        steps (:attr:`group_steps`) at a time, each step's batch a view of its group's; the targets come from
        the plan (:meth:`_planned`). (Device memory: the group being handed out, kept by the consumer's
        last batch, and the next one with its gather in the table's dtype when it is converted: about 2.5 x
        ``group_bytes`` at the most.)"""
        sizes = self._step_sizes()[start:]
        if not sizes:
            return
        store, out, group = self.resident, self._out_dtype(), self.group_steps
        steps, targets = self._planned(epoch)
        first, bounds = start * steps.shape[1], np.cumsum([0] + sizes).tolist()
        pos = steps.view(-1)[first:first + bounds[-1]]
        # the epoch's targets copied once (a batch's are its own, as the streamed tier's are: changed in place,
        # they must not change those of the later epochs the plan holds), each step's a view of the copy: on a
        # GPU the host's time per operation is what the step is bound by, so per epoch, not per group
        ys = targets[first:first + bounds[-1]].clone().split(sizes)
        for g in range(0, len(sizes), group):
            a, z = bounds[g], bounds[min(g + group, len(sizes))]
            xs = store.inputs(pos[a:z])
            if xs.dtype != out:
                xs = xs.to(out)
            for i, x in enumerate(xs.split(sizes[g:g + group]), g):
                self.rows_read += x.shape[0]
                yield x, ys[i]

    def _step_sizes(self) -> list:
        """How many rows this process has at each step of an epoch (the same every epoch)."""
        g, n = self.global_batch_size, self.rows.size
        full = n // g
        if len(self) == full:
            return [self.batch_size] * full
        lo, hi = self._part(full * g, n - full * g)
        return [self.batch_size] * full + [hi - lo]

    def _planned(self, epoch):
        """The resident tier's plan of ``epoch``: ``(steps, targets)``, on the device. ``steps``: the positions
        in the held rows of each step's rows, sorted, ``(len(self), width)`` (``width``: the rows of the
        largest step), the short last step's row ended by positions past the held rows (never read);
        ``targets``: the targets at those positions in the delivered dtype, one after the other,
        ``(len(self) * width, 1)``.

        The plan is the streamed tier's (``_epoch_index``, ``_part``: the same rows in the same order, each
        step sorted as ``step_rows`` sorts it), made on the device for several epochs in one go: as many as
        make about :data:`PLAN_POSITIONS` positions (an unshuffled source's, the same every epoch, once). On
        the host, the plan of each epoch (its order, its steps, their upload and sort) cost 2-3 ms of the
        training thread an epoch on an H100's host, at batch 4096 (5 steps an epoch of the benchmark's
        table) a tenth of the training's speed: a step there is bound by the host's time to launch its
        work. Here the host draws each epoch's permutation of pieces (a few thousand numbers), and the
        device does the rest, in a dozen operations for all the epochs."""
        import torch

        store, target = self.resident, self._target_dtype()
        # (made for these settings: a source whose seed, order, batch, process or rows change plans anew)
        kit = self.__dict__.get("_plan_kit") or {}
        if not kit or not self._still(kit["made_for"]) or kit["target"] != target or kit["store"] is not store:
            kit = self.__dict__["_plan_kit"] = {"made_for": self._made_for(), "target": target, "store": store}
        if store.device.type == "cuda":
            # The plan is kept from one epoch to the next, perhaps from one CUDA stream to another: this stream
            # waits for the work of the one that made it (queued, it may not have run yet), and the caching
            # allocator learns that this stream reads it too (else its memory, once freed, could be handed
            # out again while this stream's gathers may still read it). Lessons use one stream: nothing to do.
            here, made_on = torch.cuda.current_stream(store.device), kit.get("made_on")
            if made_on is not None and made_on != here:
                here.wait_stream(made_on)
                for name in ("held", "steps", "targets"):
                    if name in kit:
                        kit[name].record_stream(here)
            kit["made_on"] = here
        epoch = epoch if self.shuffle else 0  # (an unshuffled source's plan is the same every epoch: made once)
        if epoch - kit.get("first", 0) not in range(len(kit.get("steps", ()))):
            if "held" not in kit:  # where this source's rows are held (once: every one of them must be)
                kit["held"] = self._on_device(store, store.positions(self.rows))
            held, n, k, b, width = kit["held"], self.rows.size, self.shuffle_rows, self.batch_size, self._most_rows
            # (sized by the larger of the epoch's rows, which its order holds for every process, and this
            # process's steps)
            count = max(1, min(PLAN_EPOCHS, PLAN_POSITIONS // max(n, len(self) * width))) if self.shuffle else 1
            if self.shuffle:  # the epochs' orders, as positions in `rows` (``_epoch_index``), then in the held rows
                drawn = np.stack([self._pieces(e) for e in range(epoch, epoch + count)])
                pieces = self._on_device(store, drawn.ravel()).view(count, -1)
                at = (pieces[:, :, None] * k + torch.arange(k, device=held.device)).view(count, -1)
                if at.shape[1] > n:  # the last piece is short: its positions past the rows go, the order kept
                    at = at.gather(1, torch.argsort((at >= n).to(torch.uint8), dim=1, stable=True)[:, :n])
                order = held[at]
            else:
                order = held[None]
            g = self.global_batch_size
            full = n // g
            steps = torch.full((count, len(self), width), store.rows.size, dtype=torch.int64, device=held.device)
            if full:  # (then width is the batch size)
                steps[:, :full] = order[:, :full * g].reshape(count, full, g)[:, :, self.rank * b:(self.rank + 1) * b]
            if len(self) > full:
                lo, hi = self._part(full * g, n - full * g)
                steps[:, full, :hi - lo] = order[:, lo:hi]
            steps = torch.sort(steps, dim=2, stable=True).values  # (the padding stays at the end: it is the largest)
            read = steps.clamp(max=max(store.rows.size - 1, 0)).view(-1)
            targets = store.y.index_select(0, read).to(target).view(count, -1, 1)
            kit.update(first=epoch, steps=steps, targets=targets)
        i = epoch - kit["first"]
        return kit["steps"][i], kit["targets"][i]

    def _on_device(self, store, positions: np.ndarray):
        """``positions`` as a tensor on ``store``'s device: one upload per plan, from a page-locked buffer
        kept for the next one (a copy from pageable memory would make the host wait until the GPU has
        finished all the work queued before it; pinning memory anew each time takes milliseconds, as long
        as a step)."""
        import torch

        pos = torch.from_numpy(positions)
        if store.device.type != "cuda":
            return pos.to(store.device)
        kit = self.__dict__.setdefault("_positions_kit", {})
        if "uploaded" in kit:
            kit.pop("uploaded").synchronize()  # the last upload has read the buffer (long since, as a rule)
        if kit.get("pinned") is None or kit["pinned"].numel() < pos.numel():
            kit["pinned"] = torch.empty(max(1, pos.numel()), dtype=torch.int64, pin_memory=True)
        pinned = kit["pinned"][:pos.numel()]
        pinned.copy_(pos)
        pos = pinned.to(store.device, non_blocking=True)
        kit["uploaded"] = torch.cuda.Event()
        kit["uploaded"].record(torch.cuda.current_stream(store.device))
        return pos

    def _to_gpu(self, epoch, start, read_on=True):
        """Streamed to a GPU, all from the calling thread, a group of steps (:attr:`group_steps`) at a time: the
        native reader's own thread reads groups ahead into a ring of pinned blocks; each block (inputs and
        targets together) goes to the device in one copy on a side stream, into memory of the training
        stream; that stream waits for the copy's event, converts the group, and its steps' batches (views of
        it) are handed over. The copy of a group is started before the steps of the group before it are
        handed over, so that it runs during their compute (at batch 4096 of a float16 table, a group of one
        step, it takes about as long as the step).

        Why the memory is the training stream's: memory taken on the side stream and used on the training
        stream must be marked so (``record_stream``), and when it is freed the caching allocator records an
        event that every later allocation, the training step's included, queries until the GPU has passed
        it. The side stream instead waits for the training stream's work queued before the copy (memory of
        the training stream may have been freed by work still queued there, and is reused at once)."""
        import torch

        from .pinned_ring import PinnedRing

        t, device, out, group = self.table, self.device, self._out_dtype(), self.group_steps
        target, raw = self._target_dtype(), torch_dtype(t.dtype)
        depth = self._ahead_groups
        # The ring and the side stream (with the batches read on into the next epoch) are made once and
        # kept for the next epoch (pinning memory is slow); an iterator running beside another one makes its own.
        # slots: `depth` being read ahead and one being copied are needed (slots are refilled in turn: fewer
        # would overwrite a group not yet copied); two more, for the group copied ahead of its steps and the
        # one whose copy may still run, keep the reader from waiting for a copy just queued; rows: the
        # largest group's
        slots, rows = depth + 3, group * self._most_rows
        kit = self.__dict__.pop("_gpu_kit", None)
        if kit is not None and (kit["ring"].rows < rows or len(kit["ring"]) < slots  # (groups or prefetch changed)
                                or kit["made_for"] != (device, self.pin_memory)):  # (the side stream is a device's)
            _drop_read_on(kit)
            kit = None
        if kit is None:
            kit = {"ring": PinnedRing(slots, rows, t.n_inputs, raw, pin=self.pin_memory),
                   "side": torch.cuda.Stream(device), "made_for": (device, self.pin_memory)}
        ring, side = kit["ring"], kit["side"]
        stream = torch.cuda.current_stream(device)

        def slot(n):
            k = ring.acquire()  # waits for the copy that last read this slot (long done, as a rule)
            return (*ring.views(k, n), k)

        def copy(k, n):
            """Slot ``k``'s group of ``n`` rows to the device: ``(block, n, event)``, the event marking the
            copy's end. (Until the training stream has waited for the event, nothing may use the block, and
            the training stream waits for every copy before the block may be let go: the ``finally`` below.)"""
            if torch.cuda.current_stream(device) != stream:  # (the block's memory is to be that stream's)
                raise RuntimeError("the current CUDA stream changed in the middle of an epoch of streamed batches "
                                   "(they are copied into memory of the stream the epoch began on): ask for an "
                                   "epoch's batches on one stream")
            done = torch.cuda.Event()
            block = torch.empty(n * (t.n_inputs + 1), dtype=raw, device=device)  # (on the training stream)
            try:
                side.wait_stream(stream)  # the block's memory may have been freed by work still queued there
                with torch.cuda.stream(side):
                    block.copy_(ring.block(k, n), non_blocking=True)  # inputs and targets: one copy
            finally:
                # (also when the copy failed to be queued: the slot is not to be refilled before a copy that
                # may have been queued has read it; and released also when the record raises -- a Ctrl-C landing
                # as it returns, the event recorded -- or no wait for that copy would be left to the slot's next
                # acquire nor to the cleanup's drain. An event that was never recorded is waited for at once.)
                try:
                    done.record(side)
                finally:
                    ring.release(k, done)
            return block, n, done

        finished = False  # the epoch's last step handed out: then the next epoch's groups read on are kept

        def handed(block, n, done, sizes, last=False):
            nonlocal finished
            stream.wait_event(done)  # the steps (and the conversion) wait for the copy, the host does not
            x, y = ring.split(block, n)
            # the targets in memory of their own: an evaluation keeps every y, and a y that were a view of its
            # block would keep the group's inputs on the device too (12,848 times its size)
            x, y = x.to(out), y.to(target, copy=True)
            for i, (xs, ys) in enumerate(zip(x.split(sizes), y.split(sizes))):
                self.rows_read += xs.shape[0]
                finished = last and i == len(sizes) - 1
                yield xs, ys

        reads = self._read_ahead(epoch, start, slot, depth, kit, group, read_on)
        try:
            copied = None
            for hx, _, k, sizes in reads:
                started = (*copy(k, hx.shape[0]), sizes)  # this group's copy starts ...
                if copied is not None:
                    yield from handed(*copied)           # ... before the steps of the one before it
                copied = started
            if copied is not None:
                yield from handed(*copied, last=True)
            else:
                finished = True  # (no step left in this epoch)
        finally:
            # first, whatever fails below: the training stream's later work waits for every copy queued, so that
            # a group copied but not handed out can be let go (its memory is the training stream's, reused at once)
            stream.wait_stream(side)
            reads.close()  # before the blocks are reused or freed: nothing is read into them any more
            if not finished:
                _drop_read_on(kit)  # stopped early: the next epoch's groups read on are dropped
                ring.drain()  # (every copy run; at an epoch's end the next acquire of a slot waits for its copy)
            self.__dict__["_gpu_kit"] = kit
