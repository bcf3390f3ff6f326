"""``wideann predict RUN_DIR NEW.csv -o OUT.csv``: a trained lesson model applied to new raw data.

1. The run folder's ``model.json`` (written by the lesson with its model, see :mod:`wideann.modelcard`)
   gives the layers, the weights file and ``stats.json``, the stats the model was trained with.
2. The C++ engine normalizes ``NEW.csv`` with those stats (apply mode: a header must name the columns as
   the training table did, in the same order) into a temporary ``.npy`` in the output's folder. The CSV
   holds the training table's columns, or its input columns only (no target column).
3. The model, rebuilt as an ``nn.Sequential`` and loaded with ``torch.load(weights_only=True)``, runs
   over the table in batches read from disk (the next batch is read while the model works on this
   one), so memory stays a few batches whatever the size of the table; its normalized predictions go
   to a temporary ``.npy`` as they come.
4. The C++ denormalizer turns them back into the target's original units, and the output CSV is
   ``<target>_pred`` (for example ``y_pred``), one row per record of ``NEW.csv`` in its order, with
   ``--row-numbers`` a first column ``row`` of 0-based record numbers (header and blank lines not counted) to
   join back on.

Nothing is left at the output path or in its folder after a failure or Ctrl-C. This module imports
torch; the command line imports it only for ``predict``.
"""
from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import modelcard
from ._atomic import commit_together, folder_of, remove_listed, temp_name
from .diskspace import require_free
from .engine import (DataError, _check_output_folder, _paths, denormalize, estimated_rows, in_the_training_dtype,
                     normalize, output_bytes, wrong_output_extension)
from .info import split_fields
from .stats import Stats

DEFAULT_BATCH_SIZE = 1024  # as the lessons predict: the same batches give the same float32 results


def _first_line_fields(path: str, delimiter: str) -> tuple[int, int]:
    """Fields in the first non-blank line of a CSV, and that line's number. Reads up to that line only."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            line = raw.decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n")
            if line.strip():  # (a quoted field may hold the delimiter: "x,1")
                return len(split_fields(line, delimiter)), number
    raise DataError(f"{path}: the file is empty")


def _inputs_stats(path: str, stats: Stats, delimiter: str) -> Stats:
    """The stats to normalize ``path`` with: all the training columns, or the inputs only."""
    n_fields, line = _first_line_fields(path, delimiter)
    n = stats.n_columns
    if n_fields == n:
        return stats
    if n_fields == n - 1:
        return Stats(stats.columns[:-1], stats._min[:-1], stats._max[:-1], stats.n_rows, stats.sources)
    raise DataError(f"{path}, line {line}: {n_fields} columns, but the model was trained on {n} "
                    f"({n - 1} inputs and the target {stats.columns[-1]!r}): give the {n - 1} input columns "
                    f"in training order, with or without the target last")


def _device(requested: str | None):
    import torch

    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ValueError(f"--device {requested}: not a device (cpu, cuda, cuda:1, ...)") from None
    if device.type not in ("cpu", "cuda", "mps"):  # (meta holds no numbers; xla, vulkan, ... are not supported)
        raise ValueError(f"--device {requested}: predict runs on cpu, cuda or mps")
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise ValueError(f"--device {requested}: no such CUDA device here")
    try:  # a kind this torch was built without (mps, xla, ...): said now, not as a traceback from the model's move
        torch.empty(1, device=device)
    except (RuntimeError, NotImplementedError) as e:
        why = str(e).splitlines()[0] if str(e) else repr(e)
        raise ValueError(f"--device {requested}: not usable here ({why})") from None
    return device


def _load_model(run_dir: Path, card: dict, device):
    import pickle

    import torch

    weights = run_dir / card["weights"]
    # (what a damaged or edited file makes torch raise is many kinds of error: each is said of its file)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, IndexError, ValueError, TypeError) as e:
        raise DataError(f"{weights}: cannot be read as PyTorch weights ({_said(e, 200)})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise DataError(f"{weights}: not a state_dict")
    try:
        model = modelcard.build(card["layers"], card.get("inputs", "as_is"))
    except (ValueError, TypeError, RuntimeError) as e:
        raise DataError(f"{run_dir / modelcard.CARD_NAME}: its layers cannot be built ({_said(e, 300)})") from None
    try:
        modelcard.load_weights(model, card["layers"], state)
    except (ValueError, RuntimeError, TypeError) as e:
        raise DataError(f"{weights}: {_said(e, 300)}") from None
    return model.to(device).eval()


def _said(e: BaseException, most: int) -> str:
    """An exception's message on one line, at most ``most`` characters (its type when it has none)."""
    return (" ".join(str(e).split()) or type(e).__name__)[:most]


def _write_npy_header(f, n_rows: int) -> None:
    np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n_rows, 1)})


def _run_model(model, table_path: str, n_inputs: int, out_npy: str, batch_size: int, device, quiet: bool, *,
               source: str) -> int:
    """Predictions for every row of the normalized table, batch by batch, into a one-column ``.npy``. A
    prediction that is not a finite number is a :class:`DataError` naming ``source`` (the new data) and
    the record."""
    import torch

    from .data import NpyTable
    from .progress import Bar

    with NpyTable(table_path) as table, open(out_npy, "wb") as out, ThreadPoolExecutor(1) as reader:
        n = table.n_rows
        _write_npy_header(out, n)
        batches = (range(a, min(a + batch_size, n)) for a in range(0, n, batch_size))
        next_batch = reader.submit(table.read_rows, 0, min(batch_size, n))
        with torch.no_grad():
            for rows in Bar(batches, "predict", quiet, total=-(-n // batch_size), unit="batches"):
                x = next_batch.result()
                if rows.stop < n:  # read the next batch while the model works on this one
                    next_batch = reader.submit(table.read_rows, rows.stop, min(rows.stop + batch_size, n))
                y = model(torch.from_numpy(x[:, :n_inputs]).to(device, non_blocking=True))
                y = np.ascontiguousarray(y.float().cpu().numpy(), dtype="<f4")
                bad = np.flatnonzero(~np.isfinite(y))
                if bad.size:
                    raise DataError(f"{source}: the model's prediction for record {rows.start + bad[0]} "
                                    f"(counted from 0, as --row-numbers counts them) is {y.ravel()[bad[0]]}: its "
                                    "inputs may lie far outside the training data's range, or the weights are broken")
                out.write(y.tobytes())
    return n


def _write_output(denormalized: str, output: str, target: str, row_numbers: bool) -> None:
    """The denormalizer's one-column CSV (header: the target's name) as ``[row,]<target>_pred``, written at
    ``output`` (a temporary, which the caller renames). As bytes, the header in UTF-8 as the engine writes
    it, whatever the locale's encoding (Latin-1 names would be another file's, and a name Latin-1 cannot
    spell would fail the command)."""
    with open(denormalized, "rb") as src:
        with open(output, "wb") as dst:
            src.readline()  # the engine's header
            header = f"{target}_pred".encode("utf-8")
            if not row_numbers:
                dst.write(header + b"\n")
                shutil.copyfileobj(src, dst, 1 << 20)
                return
            dst.write(b"row," + header + b"\n")
            i = 0
            while True:
                lines = src.readlines(1 << 20)
                if not lines:
                    break
                dst.write(b"".join(b"%d,%s" % (i + k, line) for k, line in enumerate(lines)))
                i += len(lines)


def predict(run_dir, input_csv, output, *, row_numbers: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
            device: str | None = None, header: str = "auto", delimiter: str = ",", threads=None,
            progress: bool = False) -> int:
    """Apply the model of a lesson run (``run_dir``) to a raw CSV; write its predictions in original
    units to ``output`` (CSV). Returns the number of rows predicted. See the module docstring."""
    run_dir, input_csv, output = Path(run_dir), os.fspath(input_csv), os.fspath(output)
    card = modelcard.read(run_dir)
    wrong = wrong_output_extension("predict", output)
    if wrong:
        raise ValueError(wrong)
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    _check_output_folder(output)
    _paths([input_csv])  # (a folder or a FIFO is not "no such file"; a FIFO's first line read below would be lost)
    stats = Stats.load(run_dir / card["stats"])
    if stats.n_columns - 1 != card["n_inputs"]:
        raise DataError(f"{run_dir / card['stats']}: {stats.n_columns} columns, but {run_dir / 'model.json'} "
                        f"describes a model of {card['n_inputs']} inputs")
    inputs = _inputs_stats(input_csv, stats, delimiter)
    dtype = card.get("table_dtype", "float32")
    device = _device(device)
    model = _load_model(run_dir, card, device)

    folder = folder_of(output)
    # the whole estimate (normalize itself refuses only below half of it): the model's output comes next
    require_free(folder, output_bytes(estimated_rows([input_csv]), inputs.columns, dtype, "npy"),
                 f"the temporary normalized table of {input_csv}")
    made: list = []  # the work folder and the output's temporary, listed before they are made (see temp_name)
    try:
        work = temp_name(output, made, folder=True)
        table = os.path.join(work, "inputs.npy")
        try:
            normalize([input_csv], table, stats=inputs, dtype=dtype, threads=threads, header=header,
                      delimiter=delimiter, progress=progress)
        except DataError as e:
            raise in_the_training_dtype(e, f"the run {run_dir} was trained on a {dtype} table") from None
        pred = os.path.join(work, "predictions.npy")
        n = _run_model(model, table, card["n_inputs"], pred, batch_size, device, quiet=not progress,
                       source=os.fspath(input_csv))
        os.unlink(table)  # free its space before the output is written
        pred_csv = os.path.join(work, "predictions.csv")
        denormalize(pred, pred_csv, stats=stats, threads=threads, progress=progress)  # one column: the target
        out_tmp = temp_name(output, made)
        _write_output(pred_csv, out_tmp, stats.columns[-1], row_numbers)
        # The work folder goes before the output's rename, which is the last step: once the output is in
        # place nothing is left to do, so an interrupt can no longer come between a complete output and a
        # run that says "no output written" (cli.main tells by _atomic.WRITTEN that it is complete).
        shutil.rmtree(work)
        commit_together([(out_tmp, output)])
    except BaseException:
        remove_listed(made)
        raise
    note = modelcard.unchecked(run_dir, card)
    if note:  # (after the work: a failure is one line, its own)
        from .cli import say

        say(f"wideann: warning: {note}")
    return n
