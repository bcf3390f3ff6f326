"""Opening a table: one ``.npy`` file (or, later, a set of shards read as one table)."""
from __future__ import annotations

import numpy as np

from .npy import NpyTable


def load_table(path) -> np.ndarray:
    """The whole table as one float32 array (for small tables that fit in memory: lessons 1 and 2)."""
    with NpyTable(path) as t:
        return t.read_rows(0, t.n_rows)
