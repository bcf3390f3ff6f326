"""Plumbing the four lessons in ``scripts/`` share, kept out of them so they read as lessons.

- :func:`parser`: the command-line options every lesson has (each lesson adds its own).
- :func:`prepare_data`: finds the table to train on. With no ``--data`` it takes the shipped example
  CSV (``data/example.csv``) and normalizes it with the C++ engine into the run folder, printing the
  ``wideann normalize`` command it ran; a CSV given with ``--data`` / ``--test-data`` is handled the
  same way; a ``.npy`` is used as it is, with its stats file beside it.
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
from .engine import default_stats_path, denormalize, normalize
from .stats import Stats

EXAMPLE_NAME = "example.csv"


class LessonError(Exception):
    """A mistake in the user's data or files (not a bug of ours): reported as one line, exit code 1."""
    exit_code = 1


class UsageError(LessonError):
    """A wrong option or combination of options: reported as one line, exit code 2 (argparse's way)."""
    exit_code = 2


# ---- options --------------------------------------------------------------------------------
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, except None (an option the lesson fills in, or one that is simply off)."""
    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def parser(doc: str | None, lesson: str, *, epochs: int | None, batch_size: int | None,
           lr: float) -> argparse.ArgumentParser:
    """The options every lesson takes; ``lesson`` names the default run folder ``runs/<lesson>/``.

    ``epochs`` or ``batch_size`` None: the lesson chooses it from the table (:mod:`wideann.defaults`)."""
    from . import defaults

    first = (doc or "").strip().splitlines()[0] if doc else lesson
    p = argparse.ArgumentParser(description=first, formatter_class=_HelpFormatter)
    p.add_argument("--data", help="training table: a normalized .npy (stats file beside it) or a raw CSV, "
                   "normalized into the run folder (default: the shipped example data/example.csv)")
    p.add_argument("--test-data", help="a separate test table (.npy normalized with the training stats, or a "
                   "raw CSV); default: a seeded split of --data")
    p.add_argument("--stats", help="stats file of --data (default: beside it, t.npy -> t.stats.json)")
    p.add_argument("--epochs", type=int, default=epochs, help="passes over the training rows"
                   + ("" if epochs else "; " + defaults.help_text("epochs")))
    p.add_argument("--batch-size", type=int, default=batch_size,
                   help=defaults.help_text("batch_size") if batch_size is None else "rows per training step (per process)")
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


def _normalize_csv(csv: Path, folder: Path, stats: Path | None, say) -> tuple[Path, Path]:
    """CSV -> ``folder/<name>.npy`` with the engine (fitting stats unless ``stats`` is given)."""
    out = folder / (csv.stem + ".npy")
    st_path = Path(stats) if stats else Path(default_stats_path(out))
    deps = [csv] + ([Path(stats)] if stats else [])
    if _is_up_to_date(out, deps) and st_path.is_file():
        say(f"using {_shell_path(out)} (normalized from {_shell_path(csv)} earlier)")
        return out, st_path
    folder.mkdir(parents=True, exist_ok=True)
    cmd = ["wideann", "normalize", _shell_path(csv), "-o", _shell_path(out)]
    if stats:
        cmd += ["--stats", _shell_path(stats)]
    say("normalizing with the C++ engine:  " + " ".join(cmd))
    normalize([csv], out, stats=stats)
    return out, st_path


def prepare_data(args, accelerator=None) -> SimpleNamespace:
    """Resolve ``--data`` / ``--test-data`` / ``--stats`` into normalized tables.

    Returns a namespace with ``train`` (a ``.npy`` path), ``test`` (a ``.npy`` path or None),
    ``stats_path`` and ``stats`` (:class:`wideann.Stats`). With several processes the main one
    normalizes and the others wait for it.
    """
    main = accelerator is None or accelerator.is_main_process
    say = print if main else (lambda *a, **k: None)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = out_dir / "data"

    def work():
        src = Path(args.data) if args.data else example_csv()
        if not src.is_file():
            raise FileNotFoundError(f"{src}: no such file")
        if src.suffix.lower() == ".npy":
            train, stats_path = src, Path(args.stats or default_stats_path(src))
            if not stats_path.is_file():
                raise FileNotFoundError(f"{stats_path}: stats file of {src} not found (pass --stats)")
        else:
            if not args.data:
                say(f"no --data given: using the example data {_shell_path(src)}")
            train, stats_path = _normalize_csv(src, data_dir, args.stats, say)
        test = None
        if args.test_data:
            t = Path(args.test_data)
            if not t.is_file():
                raise FileNotFoundError(f"{t}: no such file")
            test = t if t.suffix.lower() == ".npy" else _normalize_csv(t, data_dir / "test", stats_path, say)[0]
        return train, test, stats_path

    if accelerator is None:
        train, test, stats_path = work()
    else:  # one process per machine normalizes; the others then find its files up to date
        with accelerator.local_main_process_first():
            train, test, stats_path = work()
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
