"""Plumbing the four lessons in ``scripts/`` share, kept out of them so they read as lessons.

- :func:`parser`: the command-line options every lesson has (each lesson adds its own).
- :func:`prepare_data`: finds the table to train on. With no ``--data`` it takes the shipped example
  CSV (``data/example.csv``) and normalizes it with the C++ engine into the run folder, printing the
  ``wideann normalize`` command it ran; CSV files given with ``--data`` / ``--test-data`` are handled
  the same way; ``.npy`` tables (one file, several shards or a folder of them) are used as they are,
  with their stats file (beside them, or ``--stats``), after checking that the shards agree.
- :func:`write_metrics`: ``metrics.json`` in the run folder, and the same numbers printed.
- :func:`save_checkpoint` / :func:`latest_checkpoint`: complete-or-absent checkpoints for ``--resume``.
- :func:`write_predictions`: test predictions back in original units through the C++ denormalizer.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ._atomic import atomic_path
from .engine import DataError, default_stats_path, denormalize, normalize
from .stats import Stats

EXAMPLE_NAME = "example.csv"


class LessonError(Exception):
    """A mistake in the user's data or files (not a bug of ours): reported as one line, exit code 1."""
    exit_code = 1


class UsageError(LessonError):
    """A wrong option or combination of options: reported as one line, exit code 2 (argparse's way)."""
    exit_code = 2


# ---- options --------------------------------------------------------------------------------
def parser(doc: str | None, lesson: str, *, epochs: int, batch_size: int, lr: float) -> argparse.ArgumentParser:
    """The options every lesson takes; ``lesson`` names the default run folder ``runs/<lesson>/``."""
    first = (doc or "").strip().splitlines()[0] if doc else lesson
    p = argparse.ArgumentParser(description=first, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", nargs="+", metavar="T", help="training table: a normalized .npy (stats file beside "
                   "it), several .npy shards of one table or a folder of them (read as one table, in the order given; "
                   "a folder's in name order), or raw CSV files, normalized into the run folder (default: the shipped "
                   "example data/example.csv)")
    p.add_argument("--test-data", nargs="+", metavar="T", help="a separate test table (.npy file(s) or folder, "
                   "normalized with the training stats, or raw CSV files); default: a seeded split of --data")
    p.add_argument("--stats", help="stats file of --data (default: beside it, t.npy -> t.stats.json; for shards "
                   "normalized with merged stats: the merged file)")
    p.add_argument("--epochs", type=int, default=epochs, help="passes over the training rows")
    p.add_argument("--batch-size", type=int, default=batch_size, help="rows per training step (per process)")
    p.add_argument("--lr", type=float, default=lr, help="learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the shuffling and the initial weights")
    p.add_argument("--output-dir", default=os.path.join("runs", lesson), help="where the run writes its files")
    return p


# ---- data -----------------------------------------------------------------------------------
def example_csv() -> Path:
    """The shipped example data: ``data/example.csv`` of the source tree."""
    candidates = []
    if os.environ.get("WIDEANN_EXAMPLE_DATA"):
        candidates.append(Path(os.environ["WIDEANN_EXAMPLE_DATA"]))
    if sys.argv and sys.argv[0]:
        candidates.append(Path(sys.argv[0]).resolve().parent.parent / "data" / EXAMPLE_NAME)
    candidates.append(Path.cwd() / "data" / EXAMPLE_NAME)
    candidates.append(Path(__file__).resolve().parents[2] / "data" / EXAMPLE_NAME)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError("the example data data/example.csv was not found; run from the wideann source "
                            "tree or pass --data")


def _shell_path(p) -> str:
    p = os.fspath(p)
    try:
        rel = os.path.relpath(p)
        p = rel if not rel.startswith(os.pardir + os.sep + os.pardir) else p
    except ValueError:
        pass
    return shlex.quote(p)


def _is_up_to_date(out: Path, sources: list[Path]) -> bool:
    return out.is_file() and all(out.stat().st_mtime >= s.stat().st_mtime for s in sources)


def _normalize_csv(csvs: list[Path], folder: Path, stats: Path | None, say) -> tuple[Path, Path]:
    """CSV file(s) -> ``folder/<name>.npy`` with the engine (fitting stats unless ``stats`` is given).

    Several CSV files are one table (concatenated in order, as ``wideann normalize a.csv b.csv`` does);
    the output is named after the first, with ``+N`` for the others."""
    name = csvs[0].stem + (f"+{len(csvs) - 1}" if len(csvs) > 1 else "")
    out = folder / (name + ".npy")
    st_path = Path(stats) if stats else Path(default_stats_path(out))
    deps = list(csvs) + ([Path(stats)] if stats else [])
    if _is_up_to_date(out, deps) and st_path.is_file() and _sources_match(out, csvs, stats):
        say(f"using {_shell_path(out)} (normalized from {' '.join(_shell_path(c) for c in csvs)} earlier)")
        return out, st_path
    folder.mkdir(parents=True, exist_ok=True)
    cmd = ["wideann", "normalize", *(_shell_path(c) for c in csvs), "-o", _shell_path(out)]
    if stats:
        cmd += ["--stats", _shell_path(stats)]
    say("normalizing with the C++ engine:  " + " ".join(cmd))
    _sources_file(out).unlink(missing_ok=True)  # written again only once the new table is complete
    normalize(csvs, out, stats=stats)
    _sources_file(out).write_text(json.dumps(_sources_key(csvs, stats)))
    return out, st_path


def _sources_file(out: Path) -> Path:
    return out.with_name(out.name + ".sources.json")


def _sources_key(csvs, stats) -> list:
    return [os.path.abspath(c) for c in csvs] + ([os.path.abspath(stats)] if stats else [])


def _sources_match(out: Path, csvs, stats) -> bool:
    """The table in the run folder was made from exactly these files (not from others of the same name)."""
    try:
        return json.loads(_sources_file(out).read_text()) == _sources_key(csvs, stats)
    except (OSError, ValueError):
        return False


def _table_files(option: str, given, default=None) -> tuple[str, list[Path]]:
    """``("npy", shards)`` or ``("csv", files)`` for the paths given to ``option``; a folder means its .npy
    files. A mix of .npy tables and CSV files is refused."""
    if isinstance(given, (str, os.PathLike)):  # one path given by a caller other than the parser
        given = [given]
    items = [Path(p) for p in given] if given else [default]
    for p in items:
        if not p.exists():
            raise LessonError(f"{p}: no such file or folder ({option})")
    csvs = [p for p in items if p.is_file() and p.suffix.lower() != ".npy"]
    if csvs and len(csvs) != len(items):
        raise UsageError(f"{option}: give .npy tables (files or folders) or raw CSV files, not both")
    if csvs:
        return "csv", csvs
    return "npy", _data_call(data_pkg().table_paths, items)


def data_pkg():
    from . import data

    return data


def _data_call(fn, *args, **kw):
    """A call into wideann.data whose data errors are the user's: one line, exit 1."""
    try:
        return fn(*args, **kw)
    except (DataError, ValueError) as e:  # DataError is a ValueError; both name the file
        raise LessonError(str(e)) from None


def prepare_data(args, accelerator=None) -> SimpleNamespace:
    """Resolve ``--data`` / ``--test-data`` / ``--stats`` into normalized tables.

    Returns a namespace with ``train`` (the list of ``.npy`` shard paths of the training table: one for
    a single file), ``test`` (the test table's shard paths, or None), ``stats_path`` and ``stats``
    (:class:`wideann.Stats`). Shards that disagree with each other (columns, dtype, stats file) or a test
    table whose columns differ from the training table's raise :class:`LessonError` naming the odd file.
    With several processes the main one normalizes and the others wait for it.
    """
    main = accelerator is None or accelerator.is_main_process
    say = print if main else (lambda *a, **k: None)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = out_dir / "data"
    data = data_pkg()

    def work():
        kind, found = _table_files("--data", args.data, None if args.data else example_csv())
        if kind == "npy":
            train = found
            stats_path, _ = _data_call(data.table_stats, train, args.stats)
        else:
            if not args.data:
                say(f"no --data given: using the example data {_shell_path(found[0])}")
            table, stats_path = _normalize_csv(found, data_dir, args.stats, say)
            train = [table]
        test = None
        if args.test_data:
            kind, found = _table_files("--test-data", args.test_data)
            test = found if kind == "npy" else [_normalize_csv(found, data_dir / "test", stats_path, say)[0]]
        return train, test, stats_path

    if accelerator is None:
        train, test, stats_path = work()
    else:  # one process per machine normalizes; the others then find its files up to date
        with accelerator.local_main_process_first():
            train, test, stats_path = work()
    # the shards agree with each other (columns, dtype), and the test table has the training columns
    with _data_call(data.open_table, train) as t:
        if test is not None:
            with _data_call(data.open_table, test) as tt:
                if tt.n_columns != t.n_columns:
                    raise LessonError(f"{tt.path}: {tt.n_columns} columns, but the training table {t.path} has "
                                      f"{t.n_columns} (--test-data must have the training table's columns)")
    return SimpleNamespace(train=train, test=test, stats_path=stats_path, stats=Stats.load(stats_path))


# ---- results --------------------------------------------------------------------------------
def write_metrics(args, accelerator, **metrics) -> dict:
    """Write ``metrics.json`` into the run folder (main process) and print the numbers."""
    out = Path(args.output_dir)
    metrics = {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in metrics.items()}
    if accelerator is None or accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "metrics.json") as tmp:
            with open(tmp, "w") as f:
                json.dump(metrics, f, indent=1)
                f.write("\n")
        print(f"test RMSE {metrics['test_rmse']:.4f}  R² {metrics['test_r2']:.4f}  (original units of y, "
              f"{metrics.get('test_rows', '?')} test rows)")
        print(f"trained {metrics['epochs']} epochs in {metrics['train_seconds']:.1f} s, "
              f"{metrics['samples_per_second']:.0f} samples/s on {metrics['world_size']} process(es)")
        print(f"-> {out / 'metrics.json'}")
    return metrics


def write_predictions(y_true, y_pred, stats_path, out_csv, accelerator=None) -> Path:
    """Test predictions in original units: ``y_true,y_pred`` CSV written by the C++ denormalizer.

    The normalized pairs go to a temporary ``.npy`` beside ``out_csv`` and ``wideann denormalize`` turns
    them back with the target column's stats (``--columns y y``).
    """
    out_csv = Path(out_csv)
    if accelerator is not None and not accelerator.is_main_process:
        return out_csv
    pairs = np.stack([np.asarray(y_true, np.float32).ravel(), np.asarray(y_pred, np.float32).ravel()], axis=1)
    tmp = out_csv.with_name(out_csv.stem + ".normalized.npy")
    np.save(tmp, pairs)
    target = Stats.load(stats_path).columns[-1]
    print("denormalizing with the C++ engine:  wideann denormalize "
          f"{_shell_path(tmp)} -o {_shell_path(out_csv)} --stats {_shell_path(stats_path)} --columns {target} {target}")
    try:
        denormalize(tmp, out_csv, stats=stats_path, columns=[target, target])
    finally:
        tmp.unlink(missing_ok=True)
    # the engine names both columns after the stats column (y,y); say which is which
    text = out_csv.read_text()
    first, _, rest = text.partition("\n")
    if first.count(",") == 1:
        with atomic_path(out_csv) as t:
            Path(t).write_text(f"{target}_true,{target}_pred\n" + rest)
    return out_csv


# ---- checkpoints ----------------------------------------------------------------------------
_CKPT = re.compile(r"^step_(\d+)$")


def _checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first. By time written, then step: a new run in a folder that
    still holds an old run's later steps must not resume from those."""
    found = []
    for p in folder.iterdir() if folder.is_dir() else []:
        m = _CKPT.match(p.name)
        if m and p.is_dir():
            found.append((p.stat().st_mtime_ns, int(m.group(1)), p))
    return [p for _, _, p in sorted(found)]


def latest_checkpoint(folder) -> Path | None:
    """The newest complete checkpoint ``folder/step_N`` (None if there is none)."""
    found = _checkpoints(Path(folder))
    return found[-1] if found else None


def save_checkpoint(accelerator, folder, step: int, keep: int = 2) -> Path:
    """``accelerator.save_state`` into ``folder/step_N``, complete or not at all.

    The state is written under a temporary name and renamed when every process has written its part,
    so an interrupted run never leaves a half-written checkpoint for ``--resume`` to trip on. Only the
    newest ``keep`` checkpoints are kept.
    """
    folder = Path(folder)
    final = folder / f"step_{step:08d}"
    tmp = folder / f".step_{step:08d}.tmp"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.utime(tmp)  # the folder's time is when it became complete
        os.replace(tmp, final)
        for p in _checkpoints(folder)[:-keep]:
            shutil.rmtree(p, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def save_model(state_dict, path, accelerator=None) -> None:
    """``torch.save`` to a temporary name, then rename (a best-model file is never half-written).

    With an ``accelerator`` only the main process writes.
    """
    import torch

    if accelerator is not None and not accelerator.is_main_process:
        return
    with atomic_path(path) as tmp:
        torch.save(state_dict, tmp)


def mixed_precision(requested: str | None) -> str:
    """The mixed precision to train with: ``requested`` if given, else the launcher's setting
    (``accelerate launch --mixed_precision`` or a config file), else bf16 on a GPU that has it.
    Without a GPU, a precision that came from a config falls back to full float32, with a note:
    bf16 on a CPU is slow where the CPU lacks bf16 instructions, and fp16 is GPU-only."""
    import torch

    if requested:
        return requested
    from_launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if not torch.cuda.is_available():
        if from_launcher != "no" and os.environ.get("RANK", "0") == "0":
            print(f"no GPU: mixed precision {from_launcher} from the launcher is not used on the CPU "
                  "(pass --mixed-precision bf16 to force it)")
        return "no"
    if from_launcher != "no":
        return from_launcher
    return "bf16" if torch.cuda.is_bf16_supported() else "no"
