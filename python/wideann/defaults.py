"""Training defaults the lessons choose from the size of the table (an option given by the user is kept).

A lesson leaves these options at ``None`` in its parser and calls :func:`choose` once it knows how many
training rows it has; :func:`choose` fills in what the user did not give and returns lines saying what
it chose and why, which the lesson prints. The rules, measured in ``benchmarks/lessons_small_table.py``
and ``benchmarks/lessons_wide.py`` (numbers in ``scripts/README.md``):

- **Small tables** (under :data:`SMALL_TABLE_ROWS` training rows, e.g. 310 of a 442-row table): an epoch is
  only a few optimizer steps and the validation set a few dozen rows, so its loss is noisy. More epochs
  (100 instead of 30), more patience (20 epochs instead of 5) and dropout 0.2 (instead of none) keep the
  network from memorizing its few rows and from stopping on a lucky validation epoch. On the diabetes
  table (442 rows) this moved lesson 3 from 0.021 below ``RidgeCV``'s test R² on average to 0.007 above.
- **Batch size** (lesson 4, ``--batch-size`` left out): 256 rows per process, halved (down to
  :data:`SMALLEST_BATCH`) until an epoch has at least :data:`MIN_STEPS_PER_EPOCH` optimizer steps. A large
  batch is what a GPU and a table of millions of rows want, but on 11,200 training rows it leaves 44
  steps an epoch, too few for Adam to fit the model (the shipped example, measured when this rule was
  chosen, with lesson 4's earlier layers and learning rate: test R² 0.938 with 256 rows, 0.953 with 64;
  with today's defaults lesson 4 reaches 0.9602, see the course's table of results).
"""
from __future__ import annotations

import math

SMALL_TABLE_ROWS = 2_000
"""Below this many training rows a table is small: more epochs, more patience, dropout."""

LARGEST_BATCH = 256
SMALLEST_BATCH = 16
MIN_STEPS_PER_EPOCH = 100

# option -> (value on a small table, value otherwise)
_BY_SIZE = {"epochs": (100, 30), "patience": (20, 5), "dropout": (0.2, 0.0)}


def batch_size(n_train: int, processes: int = 1, grad_accum: int = 1) -> int:
    """Rows per process and step: :data:`LARGEST_BATCH`, halved while an epoch of ``n_train`` rows has
    fewer than :data:`MIN_STEPS_PER_EPOCH` optimizer steps (each taking ``batch x processes x grad_accum``
    rows), but not below :data:`SMALLEST_BATCH`."""
    b = LARGEST_BATCH
    while b > SMALLEST_BATCH and math.ceil(n_train / (b * processes * grad_accum)) < MIN_STEPS_PER_EPOCH:
        b //= 2
    return b


def choose(args, n_train: int, processes: int = 1) -> list[str]:
    """Fill the options of ``args`` that are ``None`` (of ``epochs``, ``patience``, ``dropout``,
    ``batch_size``) from ``n_train``, the number of training rows; return lines saying what was chosen."""
    small = n_train < SMALL_TABLE_ROWS
    chosen = []
    for name, (if_small, otherwise) in _BY_SIZE.items():
        if getattr(args, name, 0) is None:
            setattr(args, name, if_small if small else otherwise)
            chosen.append(f"--{name.replace('_', '-')} {getattr(args, name):g}")
    if getattr(args, "batch_size", 0) is None:
        args.batch_size = batch_size(n_train, processes, getattr(args, "grad_accum", 1))
        chosen.append(f"--batch-size {args.batch_size}")
    if not chosen:
        return []
    size = (f"a small table, under {SMALL_TABLE_ROWS:,}" if small
            else f"not a small table, which has under {SMALL_TABLE_ROWS:,}")
    lines = [f"defaults chosen from the size of the table ({n_train:,} training rows: {size}): {', '.join(chosen)}"]
    if any(c.startswith("--batch-size") for c in chosen):
        steps = math.ceil(n_train / (args.batch_size * processes * getattr(args, "grad_accum", 1)))
        lines.append(f"  batch size {args.batch_size} per process: {steps:,} steps an epoch ({LARGEST_BATCH} rows, "
                     f"halved while an epoch has fewer than {MIN_STEPS_PER_EPOCH} steps, down to {SMALLEST_BATCH})")
    return lines


def help_text(option: str) -> str:
    """The ``--help`` line of a chosen option: its two values and when each is used."""
    if option == "batch_size":
        return (f"rows per training step (per process); default: {LARGEST_BATCH}, fewer when an epoch would have "
                f"fewer than {MIN_STEPS_PER_EPOCH} steps (at least {SMALLEST_BATCH})")
    if_small, otherwise = _BY_SIZE[option]
    return f"default: {otherwise:g}, or {if_small:g} on a small table (under {SMALL_TABLE_ROWS:,} training rows)"
