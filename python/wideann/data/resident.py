"""The resident tier: a process's rows held in device memory, batches gathered there.

When the rows a process reads fit in its device's memory with room to spare, streaming them from disk
every epoch is wasted work: :class:`ResidentRows` loads them onto the device once -- in chunks, so host
memory stays bounded as with streaming -- and batches are then gathered on the device, one ``index_select``
per group of steps (see :class:`~wideann.data.batches.ShardedBatches`; :meth:`ResidentRows.gather`). The
rows and their order are exactly those of the streamed path (the batch plan is the same; only where the
bytes come from differs), so training is identical (``tests/test_tiers.py``).

Which rows a process must hold. The sharing rule (see :mod:`wideann.data.batches`) gives every process
different training rows every epoch: any training row can reach any process in some epoch. So "the
process's shard" that the resident tier holds is every row its batch sources may read: **all** training
rows, plus the validation rows (read every epoch). Every process holds its own copy; the test rows are
streamed (read once). A float16 table stays float16 on the device (2 bytes a value) and batches are
converted there.

:func:`device_tier` decides, prints why, and loads: resident when the rows fit a budget, else streamed.
The default budget is half of the device's free memory at the time of the decision: the other half is
for the model, its gradients, the optimizer's state and the activations (lesson 4's reference model,
12,848 -> 1024 -> 256 -> 1 with Adam, needs about 0.3 GB of them). On a CPU, ``auto`` streams: the
streamed path already reads from the page cache, and lessons 3-4 promise memory that does not grow with
the table; ``tier="resident"`` on a CPU holds the rows in host memory (tests use it as the "device").
"""
from __future__ import annotations

import os
from typing import NamedTuple, Sequence

import numpy as np

from .shards import available_memory

DEFAULT_BUDGET_FRACTION = 0.5
"""Share of the device's free memory the resident tier may use by default."""

CHUNK_BYTES = 64 << 20
"""Host memory used to load the rows: read in chunks of this many bytes, copied, reused."""

TIERS = ("auto", "stream", "resident")


class TierDoesNotFit(MemoryError):
    """``--data-tier resident`` asked for rows that do not fit the budget: the user's choice, said in one line."""


class ResidentRows:
    """The rows ``rows`` of ``table`` held on ``device``: inputs in ``x``, targets in ``y``, in the
    table's dtype, row ``rows[i]`` at position ``i``.

    Loaded in chunks of :data:`CHUNK_BYTES` read by the native reader into (pinned, for a GPU) host
    buffers and copied to the device, so that host memory stays bounded whatever the table's size.
    """

    def __init__(self, table, rows, device, chunk_bytes: int = CHUNK_BYTES):
        import torch

        self.table = table
        self.rows = np.unique(np.asarray(rows, dtype=np.int64))
        self.rows.flags.writeable = False  # (where each row is held: fixed once loaded)
        self.device = resolve_device(device)
        dtype = torch_dtype(table.dtype)
        n, k = self.rows.size, table.n_inputs
        self.x = torch.empty((n, k), dtype=dtype, device=self.device)
        self.y = torch.empty((n, 1), dtype=dtype, device=self.device)
        self._x_words = _as_words(self.x)  # the same memory, seen as whole rows of wider values (`gather`)
        chunk = max(1, int(chunk_bytes // max(table.row_bytes, 1)))
        if self.device.type == "cpu":  # the "device" is host memory: read straight into it
            for a in range(0, n, chunk):
                b = min(n, a + chunk)
                table.read_index(self.rows[a:b], (self.x[a:b].numpy(), self.y[a:b].numpy()))
            return
        pin = self.device.type == "cuda"
        hx = torch.empty((min(chunk, n), k), dtype=dtype, pin_memory=pin)
        hy = torch.empty((min(chunk, n), 1), dtype=dtype, pin_memory=pin)
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            table.read_index(self.rows[a:b], (hx[:b - a].numpy(), hy[:b - a].numpy()))
            self.x[a:b].copy_(hx[:b - a], non_blocking=pin)
            self.y[a:b].copy_(hy[:b - a], non_blocking=pin)
            if pin:  # the host buffers are reused for the next chunk
                torch.cuda.current_stream(self.device).synchronize()

    @property
    def nbytes(self) -> int:
        return self.x.numel() * self.x.element_size() + self.y.numel() * self.y.element_size()

    def gather(self, positions):
        """The inputs and the targets held at ``positions`` (positions on the device), in the table's dtype."""
        return self.inputs(positions), self.y.index_select(0, positions)

    def inputs(self, positions):
        """The inputs held at ``positions``, in the table's dtype. Gathered as rows of 8-byte words where a
        row's bytes divide into them (a float16 row of 12,848 values is 3,212 words): the same bytes in a
        quarter of the elements, for a gather (PyTorch's ``index_select``) that may move one element per GPU
        thread. (On an H100 with torch 2.11 both ran at about 2.5 TB/s: ``benchmarks/gpu_data_path.py``,
        its gather figures.)"""
        return self._x_words.index_select(0, positions).view(self.x.dtype)

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """Where the (global) ``rows`` are held; every one of them must be."""
        rows = np.asarray(rows, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.rows, rows), max(self.rows.size - 1, 0))
        if rows.size and not np.array_equal(self.rows[pos], rows):
            raise KeyError("a batch asks for rows the resident tier does not hold")
        return pos


def _as_words(x):
    """The rows of ``x`` (2-D, contiguous) seen as the widest integers (8 or 4 bytes) that divide a row's
    bytes, or ``x`` itself where none is wider than its values or divides them (or a row has no bytes: a
    table of targets only)."""
    import torch

    row_bytes = x.shape[1] * x.element_size()
    for word in (torch.int64, torch.int32):
        if word.itemsize > x.element_size() and row_bytes and row_bytes % word.itemsize == 0:
            return x.view(word)
    return x


def resolve_device(device):
    """``device`` as a ``torch.device``; a GPU without an index is the current one (``cuda`` -> ``cuda:0``),
    so that devices compare equal and ``torch.cuda.set_device`` accepts them."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def torch_dtype(np_dtype):
    import torch

    return {2: torch.float16, 4: torch.float32, 8: torch.float64}[np.dtype(np_dtype).itemsize]


class Tier(NamedTuple):
    """Where batches come from: ``name`` "resident" (``store`` holds the rows) or "stream"; ``reason``
    says why, in words."""
    name: str
    reason: str
    store: ResidentRows | None = None


def _gib(n: float) -> str:
    """A size in GiB, as the budget is given; under 0.01 GiB in MiB (or bytes), not as "0.00 GiB": a small
    table forced into a tiny budget said that its "0.00 GiB" were more than the budget of "0.00 GiB"."""
    if n >= 2**30 / 100:
        return f"{n / 2**30:.2f} GiB"
    if n >= 2**20 / 100:
        return f"{n / 2**20:.2f} MiB"
    return f"{int(n):,} bytes"


def _host_available() -> int:
    """Host memory available now (:func:`~wideann.data.shards.available_memory`: MemAvailable, or a
    container's limit less its anonymous memory when lower), else the free pages."""
    found = available_memory()
    return found if found is not None else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def device_tier(table, rows: Sequence[np.ndarray], device, tier: str = "auto",
                budget_gib: float | None = None) -> Tier:
    """Decide how batches of ``table`` reach ``device``, and load the rows if they are to be resident.

    ``rows``: the row sets the process's batch sources read (e.g. ``[split.train, split.val]``: see the
    module docstring for why all training rows). ``tier``: "auto" (resident on a GPU when the rows fit the
    budget, else streamed), "stream" (always stream) or "resident" (hold them, or fail if they do not
    fit). ``budget_gib``: device memory the rows may take, in GiB (default: half the free memory).
    """
    import torch

    if tier not in TIERS:
        raise ValueError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
    device = resolve_device(device)
    if tier == "stream":
        return Tier("stream", "streaming was asked for (--data-tier stream)")
    held = np.unique(np.concatenate([np.asarray(r, dtype=np.int64) for r in rows] or [np.empty(0, np.int64)]))
    need = held.size * table.row_bytes
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        where = f"of {device}'s {_gib(free)} free"
    elif tier == "auto":
        return Tier("stream", "on the CPU batches are streamed from the page cache; --data-tier resident "
                              "would hold the rows in host memory")
    else:
        free = _host_available()
        where = f"of the {_gib(free)} of host memory available"
    budget = int(budget_gib * 2**30) if budget_gib is not None else int(DEFAULT_BUDGET_FRACTION * free)
    told = "--resident-budget" if budget_gib is not None else f"default: {DEFAULT_BUDGET_FRACTION:.0%} {where}"
    fits = need <= budget
    if not fits:
        said = (_gib(need), _gib(budget))
        if said[0] == said[1]:  # (just over the budget: "take 1.00 GiB, more than the budget of 1.00 GiB")
            said = (f"{need:,} bytes", f"{budget:,} bytes")
        why = (f"the {held.size:,} rows the batches read take {said[0]}, more than the budget of "
               f"{said[1]} ({told})")
        if tier == "resident":
            raise TierDoesNotFit(f"--data-tier resident: {why}; give a larger --resident-budget, or --data-tier "
                                 "auto to stream what does not fit")
        return Tier("stream", why)
    store = ResidentRows(table, held, device)
    return Tier("resident", f"the {held.size:,} rows the batches read ({_gib(need)}, {table.dtype}) fit the "
                            f"budget of {_gib(budget)} ({told}): loaded once, batches gathered on the device", store)
