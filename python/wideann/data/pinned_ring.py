"""Reusable page-locked batch buffers for the copy to a GPU.

A fresh pinned buffer per batch costs a ``cudaHostAlloc`` (slow, and it serializes with the GPU) and its
page faults every time. :class:`PinnedRing` allocates a few batch blocks once (a batch source keeps its
ring from one epoch iterator to the next) and hands them out in turn; a block is handed out again only
when the copy to the GPU that reads it has finished (the CUDA event recorded after that copy), so the
reader never overwrites rows still on their way.

A block holds a batch of ``n`` rows as its inputs (``n x n_inputs`` values) followed at once by its
targets (``n`` values): one copy takes both to the GPU, where :meth:`PinnedRing.split` gives the two
parts of the copied block (the batch sources copy the targets out of it, so that a kept ``y`` does not
keep the inputs' memory alive).

On a CPU there is nothing to copy: the batch sources do not use a ring there (see
:class:`~wideann.data.batches.ShardedBatches`).
"""
from __future__ import annotations


class PinnedRing:
    """``slots`` blocks of ``rows x (n_inputs + 1)`` values of ``dtype``, page-locked when ``pin`` (the
    default), reused in turn.

    >>> ring = PinnedRing(3, 256, 12848, torch.float16)
    >>> k = ring.acquire()             # waits until slot k's last copy has finished
    >>> x, y = ring.views(k, n)        # fill them (n rows), copy ring.block(k, n) on a side stream, then:
    >>> ring.release(k, event)         # the event recorded on that stream after the copy
    """

    def __init__(self, slots: int, rows: int, n_inputs: int, dtype, pin: bool = True):
        import torch

        if slots < 1 or rows < 1:
            raise ValueError("a ring needs at least one slot of at least one row")
        self.rows, self.n_inputs = int(rows), int(n_inputs)
        self.blocks = [torch.empty(rows * (n_inputs + 1), dtype=dtype, pin_memory=pin) for _ in range(slots)]
        self._events = [None] * slots
        self._next = 0

    def __len__(self) -> int:
        return len(self.blocks)

    def block(self, k: int, n: int):
        """Slot ``k``'s first ``n`` rows: inputs then targets, one piece of memory."""
        if not 0 <= n <= self.rows:
            raise ValueError(f"a slot holds at most {self.rows} rows, not {n}")
        return self.blocks[k][:n * (self.n_inputs + 1)]

    def views(self, k: int, n: int):
        """``(x, y)``: views of slot ``k`` for ``n`` rows, ``n x n_inputs`` and ``n x 1``."""
        return self.split(self.block(k, n), n)

    def split(self, block, n: int):
        """``(x, y)``: a block of ``n`` rows (a slot's, or its copy on the device) as its inputs and targets."""
        return block[:n * self.n_inputs].view(n, self.n_inputs), block[n * self.n_inputs:].view(n, 1)

    def acquire(self) -> int:
        """The next slot, once the copy that last read it has finished."""
        k = self._next
        self._next = (k + 1) % len(self.blocks)
        event, self._events[k] = self._events[k], None
        if event is not None:
            event.synchronize()
        return k

    def release(self, k: int, event) -> None:
        """Slot ``k`` is being read by the copy that ``event`` (recorded after it) marks the end of."""
        self._events[k] = event

    def drain(self) -> None:
        """Wait for every copy in flight (before the buffers are freed)."""
        for k, event in enumerate(self._events):
            if event is not None:
                event.synchronize()
                self._events[k] = None
