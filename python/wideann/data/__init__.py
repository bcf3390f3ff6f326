"""Reading normalized ``.npy`` tables in batches, without holding them in memory.

A table made by ``wideann normalize`` is a C-ordered ``rows x columns`` array of float32 (or float16)
in a ``.npy`` file: the inputs in every column but the last, the target ``y`` in the last.

The modules, one job each:

- :mod:`.npy` -- the ``.npy`` format: :class:`NpyTable` parses the header and reads any rows with
  ``os.preadv`` (no memory map is kept: its pages would count as resident memory); :func:`runs_of`.
- :mod:`.shards` -- a table is one ``.npy`` or several shards read as one (same columns, dtype and
  stats; rows in file order; a folder means its ``.npy`` files in name order): :func:`table_paths`,
  :func:`open_table` (an :class:`NpyTable` or a :class:`ShardSet`), :func:`table_stats` (the stats file,
  checked against every shard), :func:`load_table` (the whole table in memory, lessons 1-2),
  :func:`check_finite` (rows read to refuse a nan or inf, naming file, row and column).
- :mod:`.splits` -- :func:`split_rows` splits row indices into train / validation / test sets, seeded,
  in blocks of consecutive rows so that the sets can be read from disk in large pieces.
- :mod:`.batches` -- :class:`ShardedBatches`, the out-of-core batch source of lessons 3 and 4
  (per-epoch seeded shuffling, one part of every global batch per process, read-ahead, delivery on the
  device); its docstring states the rule by which rows are shared between processes.
- :mod:`.native_reader` -- glue to the native batch reader (``csrc/batch_reader.cpp``): several threads,
  one ``preadv`` per run of rows, inputs and targets straight into the caller's buffers.
- :mod:`.pinned_ring` -- :class:`PinnedRing`, reusable page-locked batch buffers for the copy to a GPU.
- :mod:`.resident` -- the resident tier: :class:`ResidentRows` (rows held in device memory, batches
  gathered there) and :func:`device_tier` (resident when the rows fit a budget, else streamed; says why).
"""
from .batches import ShardedBatches
from .npy import NpyTable, runs_of
from .pinned_ring import PinnedRing
from .resident import ResidentRows, Tier, TierDoesNotFit, device_tier
from .shards import (ShardSet, check_finite, load_table, open_table, refuse_non_finite, stats_beside, table_paths,
                     table_stats)
from .splits import SPLIT_BLOCK_ROWS, Split, TooFewRows, split_block_rows, split_rows

__all__ = ["NpyTable", "ShardSet", "open_table", "table_paths", "table_stats", "stats_beside", "load_table",
           "check_finite", "refuse_non_finite",
           "split_rows", "split_block_rows", "Split", "TooFewRows", "ShardedBatches", "runs_of", "SPLIT_BLOCK_ROWS",
           "PinnedRing", "ResidentRows", "TierDoesNotFit",
           "Tier", "device_tier"]
