"""Splitting a table's rows into training, validation and test sets."""
from __future__ import annotations

import math
import operator
from typing import NamedTuple

import numpy as np

SPLIT_BLOCK_ROWS = 64
"""Rows are assigned to train / validation / test in blocks of at most this many consecutive rows."""


def split_block_rows(n_rows: int) -> int:
    """The block of :func:`split_rows` for a table of ``n_rows``: :data:`SPLIT_BLOCK_ROWS` rows, fewer
    on tables of under 6,400 rows, so that there are at least 100 blocks (every set within 1% of its
    fraction; one row per block below 200 rows). On a table of 442 rows, 64-row blocks would make 7
    blocks: a "20%" test set of 64 rows and only 7 possible test sets."""
    return max(1, min(SPLIT_BLOCK_ROWS, n_rows // 100))


_MOST_BLOCKS = 10**6
"""How far :func:`split_rows` looks for the number of blocks a split needs, to say it."""


def _whole(value, name: str) -> int:
    """``value`` as an int if it is a whole number (an int, a numpy integer), else a :class:`TypeError` naming
    it (a float ``n_rows`` would split rows past the table, a float ``block_rows`` give float row indices;
    :class:`~wideann.data.batches.ShardedBatches` checks its settings with it too)."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be a whole number, got {value!r}") from None


class Split(NamedTuple):
    """Sorted row indices of each set."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


class TooFewRows(ValueError):
    """A table with too few rows for the split asked for; the message says how many it needs."""


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
    n_rows = _whole(n_rows, "n_rows")
    if block_rows is not None:
        block_rows = _whole(block_rows, "block_rows")
    if not (0 <= test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
        raise ValueError("fractions must be in [0, 1) and leave rows for training")
    if block_rows is None:
        block_rows = split_block_rows(n_rows)
    if block_rows < 1:
        raise ValueError("block_rows must be >= 1")

    def sizes(n_blocks):  # blocks of the test and validation sets: each set asked for gets one at least
        n_test = max(int(round(test_fraction * n_blocks)), 1 if test_fraction > 0 else 0)
        n_val = max(int(round(val_fraction * n_blocks)), 1 if val_fraction > 0 else 0)
        return n_test, n_val

    n_blocks = math.ceil(n_rows / block_rows)
    n_test, n_val = sizes(n_blocks)
    if n_rows < 1 or n_test + n_val >= n_blocks:
        enough = next((n for n in range(1, _MOST_BLOCKS) if sum(sizes(n)) < n), None)
        sets = ["training"] + ["validation"] * (val_fraction > 0) + ["test"] * (test_fraction > 0)
        into = f"{', '.join(sets[:-1])} and {sets[-1]} rows" if len(sets) > 1 else "training rows"
        rows = f"{n_rows} rows are" if n_rows != 1 else "1 row is"
        if enough is None:  # (fractions leaving under one block in a million for training: 0.9999999)
            raise TooFewRows(f"{rows} too few to split into {into} with test fraction {test_fraction} and "
                             f"validation fraction {val_fraction}: they leave {1 - test_fraction - val_fraction:.2g} "
                             f"of the rows for training, less than one block (of {block_rows} consecutive rows) in "
                             f"{_MOST_BLOCKS:,}; give smaller fractions"
                             + (" (or give --test-data)" if test_fraction else ""))
        raise TooFewRows(f"{rows} too few to split into {into} (they go in blocks of {block_rows} "
                         f"consecutive rows): this needs at least {(enough - 1) * block_rows + 1} rows"
                         + (" (or give --test-data)" if test_fraction else ""))
    perm = np.random.default_rng(seed).permutation(n_blocks)

    def rows_of(blocks):
        blocks = np.sort(blocks)
        r = (blocks[:, None] * block_rows + np.arange(block_rows)[None, :]).ravel()
        return r[r < n_rows]

    return Split(train=rows_of(perm[n_test + n_val:]), val=rows_of(perm[n_test:n_test + n_val]),
                 test=rows_of(perm[:n_test]))
