"""Recycled host memory for batches delivered on the CPU.

A fresh buffer per batch pays its page faults every time: a 52 MB batch (1,024 rows of 12,849 float32
values) is 12,700 faults and as many zeroed pages before the first byte is read, which cost more than
the read itself. A :class:`BlockPool` hands out numpy arrays over blocks of memory that come back to the
pool once nothing uses them any more -- not the batch tensor, not a view of it, not an autograd graph
that saved it -- and gives them out again, already mapped.

How it knows: each batch array is a fresh numpy view of a pool block, and a ``weakref.finalize`` on that
view returns the block. ``torch.from_numpy`` keeps the view alive for as long as any tensor shares its
memory, so the block is only reused when no tensor can see it. Keeping batches (a list of them, targets
kept for metrics) is therefore safe; it only means the pool allocates more blocks. At most ``keep``
free blocks are kept, and only while the pool is in use (between :meth:`BlockPool.open` and
:meth:`BlockPool.close`, e.g. during an epoch): an idle batch source holds no memory.
"""
from __future__ import annotations

import weakref

import numpy as np


class BlockPool:
    """Blocks of ``nbytes`` bytes, recycled once nothing uses the arrays made from them."""

    def __init__(self, nbytes: int, keep: int = 8):
        self.nbytes, self.keep = int(nbytes), int(keep)
        self._free: list[np.ndarray] = []
        self._users = 0
        self.allocated = 0  # blocks made (for tests and curiosity)

    def open(self) -> None:
        """Someone hands out arrays now: blocks that come back are kept for reuse."""
        self._users += 1

    def close(self) -> None:
        """That someone is done; with nobody left, free blocks are released (and later ones too)."""
        self._users = max(0, self._users - 1)
        if not self._users:
            self._free.clear()

    def array(self, shape, dtype) -> np.ndarray:
        """A C-contiguous array of ``shape`` and ``dtype`` (uninitialized) over a pooled block."""
        dtype = np.dtype(dtype)
        n = int(np.prod(shape)) * dtype.itemsize
        if n > self.nbytes:
            raise ValueError(f"{n} bytes asked of a pool of {self.nbytes}-byte blocks")
        try:
            block = self._free.pop()
        except IndexError:
            block = np.empty(self.nbytes, np.uint8)
            self.allocated += 1
        view = block[:n].view(dtype).reshape(shape)
        weakref.finalize(view, self._give_back, block)
        return view

    def _give_back(self, block: np.ndarray) -> None:
        if self._users and len(self._free) < self.keep:
            self._free.append(block)
