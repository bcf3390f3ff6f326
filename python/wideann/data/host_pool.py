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
free blocks are kept (from one epoch to the next: a fresh block costs its page faults again), and batch
sources whose batches have the same size share one pool (:meth:`BlockPool.shared`: the validation and
test sources of a lesson hold one set of spare blocks, not two).
"""
from __future__ import annotations

import weakref

import numpy as np


class BlockPool:
    """Blocks of ``nbytes`` bytes, recycled once nothing uses the arrays made from them."""

    def __init__(self, nbytes: int, keep: int = 8):
        self.nbytes, self.keep = int(nbytes), int(keep)
        self._free: list[np.ndarray] = []
        self.allocated = 0  # blocks made (for tests and curiosity)

    @classmethod
    def shared(cls, nbytes: int, keep: int) -> "BlockPool":
        """The pool of ``nbytes`` blocks that other users of that size share (made if there is none; it
        lives as long as one of them keeps it)."""
        pool = _SHARED.get(int(nbytes))
        if pool is None:
            pool = _SHARED[int(nbytes)] = cls(nbytes, keep)
        pool.keep = max(pool.keep, int(keep))
        return pool

    @property
    def spare(self) -> int:
        """Free blocks held now."""
        return len(self._free)

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
        if len(self._free) < self.keep:
            self._free.append(block)


_SHARED: "weakref.WeakValueDictionary[int, BlockPool]" = weakref.WeakValueDictionary()
