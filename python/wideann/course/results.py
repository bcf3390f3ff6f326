"""What a run leaves in its folder: ``metrics.json`` (:func:`write_metrics`), the test predictions in
original units (:func:`write_predictions`, through the C++ denormalizer), and the model
(:func:`save_model`: its weights, with ``model.json`` and ``stats.json`` for ``wideann predict``); each
written complete or not at all, the free space checked first, a full disk said in one line."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from .._atomic import (atomic_path, refuse_a_write_protected_file, remove_listed, temp_name, what_is_not_a_file,
                       why_not_writable)
from .._entry import counted, printable
from ..cli import is_a_position
from ..diskspace import NotEnoughSpace, human_bytes, require_free
from ..engine import denormalize
from ..modelcard import CARD_NAME, STATS_NAME
from ..stats import Stats
from .errors import LessonError, UsageError, shown
from .processes import pause, settle
from .tables import shell_path, shell_word


RESULTS = ("metrics.json", "predictions.csv", "loss.png", "predicted_vs_actual.png")
"""What a lesson writes into its run folder at its end, from its final model."""


WRITTEN_AT_THE_END = ("model.pt", "best_model.pt", CARD_NAME, STATS_NAME) + RESULTS
"""Every file a lesson replaces in its run folder once it has trained: the weights (lesson 1's ``model.pt``, the
others' ``best_model.pt``), the model card and its stats, and the :data:`RESULTS` (which :func:`clear_results`
removes, whichever lesson runs)."""


def refuse_a_run_folder_that_may_not_be_written(out_dir, args=None) -> None:
    """Before any work (a lesson calls it through :func:`~wideann.course.tables.prepare_data`), what would make
    the run fail at its end, after all the training: a run folder that may not be written in, a write-protected
    file at one of :data:`WRITTEN_AT_THE_END` (a plain ``open()``, ``cp``, ``torch.save`` refuse to write it; renamed
    over, its protection would be lost without a word, or, being a result, it would be removed), a folder or
    anything but a file there, and, for a lesson that saves checkpoints (``--checkpoint-every``), a
    ``checkpoints`` folder that may not be written in, and, with ``--log-with tensorboard``, the folder of the
    lesson's curves (:func:`tensorboard_folder`: anything but a folder there, or one that may not be written in,
    or an hparams folder in it that a new run removes; a folder of curves that is another run's folder, or a run
    folder that holds another run's curves: :func:`refuse_curves_and_a_run_folder_in_one`), with ``--log-with aim``
    the folder of Aim's repository (:func:`aim_folder`). ``PermissionError`` (exit 1, one line naming the file) or
    :class:`LessonError`. Files there that may be written (a finished run's, or the files of the run ``--resume``
    continues) are fine. Call it on the main process only: it alone writes them. (As for ``open()``, the
    superuser may write any file.)"""
    out_dir = Path(out_dir)
    folders = [out_dir] + ([out_dir / "checkpoints"] if getattr(args, "checkpoint_every", None) else [])
    curves = tensorboard_folder(out_dir, args)
    refuse_curves_and_a_run_folder_in_one(out_dir, curves, getattr(args, "lesson", None))
    aim = aim_folder(out_dir, args)
    if aim is not None:  # Aim's repository (accelerate gives it the run folder, where Aim keeps it in .aim/)
        if (aim.exists() or aim.is_symlink()) and not aim.is_dir():
            raise LessonError(f"{shown(aim)}: is not a folder: the Aim tracker keeps its repository in a folder there "
                              "(--log-with aim); move it away, or give another --output-dir")
        folders.append(aim)
    if curves is not None:  # (refused at its first write, TensorBoard's thread printed a traceback once training
        # had begun; after a --resume had put the checkpoint's older model back and removed the later results)
        if (curves.exists() or curves.is_symlink()) and not curves.is_dir():
            raise LessonError(f"{shown(curves)}: is not a folder: the run writes its TensorBoard curves into a folder "
                              "there (--log-with tensorboard); move it away, or give another --output-dir")
        # the folder, and the hparams folders in it that a new run removes with the earlier run's curves
        folders += [curves] + [p for p in (curves.iterdir() if curves.is_dir() else [])
                               if p.is_dir() and not p.is_symlink() and _HPARAMS_FOLDER.match(p.name)]
    for folder in folders:
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            code, why = why_not_writable(folder)
            fix = "make it writable, or give" if code == errno.EACCES else "give"
            raise OSError(code, f"cannot write in this folder of the run ({why}): {fix} another --output-dir",
                          os.fspath(folder))
    for name in WRITTEN_AT_THE_END:
        wrong = what_is_not_a_file(out_dir / name)
        if wrong:
            raise LessonError(f"{printable(wrong)} (the run writes its {name} there)")
        refuse_a_write_protected_file(out_dir / name)


def tensorboard_folder(out_dir, args) -> Path | None:
    """Where ``--log-with tensorboard`` (or ``all``, with TensorBoard installed) writes a lesson's curves,
    ``OUTPUT_DIR/<lesson>/`` (the name the lesson gives ``accelerator.init_trackers``); None without it."""
    lesson = getattr(args, "lesson", None)
    if not lesson or not _logs_to(args, "tensorboard"):
        return None
    return Path(out_dir) / lesson


def _logs_to(args, tracker: str) -> bool:
    """Whether the run logs to ``tracker``: named in ``--log-with``, or ``all`` there with it installed."""
    trackers = getattr(args, "log_with", None) or []
    if tracker in trackers:
        return True
    if "all" not in trackers:
        return False
    from accelerate.tracking import get_available_trackers

    return tracker in [str(t) for t in get_available_trackers()]


def aim_folder(out_dir, args) -> Path | None:
    """Where ``--log-with aim`` (or ``all``, with Aim installed) keeps its repository: accelerate gives the Aim
    tracker its ``project_dir``, the run folder, and Aim keeps a repository in its ``.aim/``; None without it.
    (The other trackers that write files write them where their own settings say, not in the run folder: MLflow
    into ``./mlruns`` or its ``MLFLOW_TRACKING_URI``, wandb into ``./wandb`` or ``WANDB_DIR``, ...)"""
    return Path(out_dir) / ".aim" if _logs_to(args, "aim") else None


_RUN_FILES = WRITTEN_AT_THE_END + ("checkpoints", "data")
"""What only a run folder holds (a folder of curves holds event files and hparams folders)."""


def refuse_curves_and_a_run_folder_in_one(out_dir: Path, curves: Path | None, lesson: str | None) -> None:
    """:class:`UsageError` (one line, exit code 2) for a layout in which one run's TensorBoard curves and another
    run's files would share a folder: the folder of this run's curves (``OUTPUT_DIR/<lesson>/``) is a run folder
    (the lesson's default ``runs/<lesson>``, where a run started without ``--output-dir`` writes, or a folder
    holding a run's files), or this run folder holds curves (event files: it is the folder of the curves of a run
    in the folder above). The run lock of either would not see the other: their runs wrote into one folder."""
    if curves is not None:
        default = Path("runs") / lesson if lesson else None
        if default is not None and os.path.realpath(curves) == os.path.realpath(default):
            is_what = f"the run folder of {lesson}.py run without --output-dir ({default})"
        elif curves.is_dir() and any((curves / name).exists() for name in _RUN_FILES):
            is_what = "a run folder (it holds a run's files)"
        else:
            is_what = None
        if is_what:
            raise UsageError(f"--output-dir {shown(out_dir)} with --log-with tensorboard: the run's curves would go "
                             f"into {shown(curves)}, which is {is_what}: one run's curves and another's files would "
                             "mix in one folder; give another --output-dir (runs/NAME puts the curves in "
                             f"runs/NAME/{shown(curves.name)})")
    events = next(iter(sorted(out_dir.glob("events.out.tfevents.*"))), None) if out_dir.is_dir() else None
    if events is not None:
        raise UsageError(f"--output-dir {shown(out_dir)}: this folder holds TensorBoard curves ({shown(events.name)}): "
                         f"it is the folder of the curves of a run in {shown(out_dir.parent)} (--output-dir "
                         f"{shown(out_dir.parent)} --log-with tensorboard): that run's curves and this run's files "
                         "would mix in one folder; give another --output-dir")


_cleared: set = set()  # the run folders whose earlier results this process has removed


def clear_results(out_dir, accelerator=None, curves=None) -> list[Path]:
    """Remove the :data:`RESULTS` an earlier run left in ``out_dir`` (once per process and folder), and say
    so; returns those removed. With ``curves``, the folder where TensorBoard writes this lesson's curves
    (``OUTPUT_DIR/<lesson>/``), the earlier run's curves go too: its event files and the hparams folders in
    it (named by the time they were made; other files there are left).

    A lesson calls it as a new run starts training, once its options, data and any resume are checked, just
    before ``accelerator.init_trackers``: from there on the folder's results and curves are the new run's, so
    they always belong to one run (the trackers replace an earlier run's curves then; a run without a tracker
    would leave them beside its results), and a run refused before leaves the earlier run whole. It is also
    called as a run's model replaces the one the results were made with (:func:`save_model`, a ``--resume``
    that puts back an older model): a run folder never holds one model beside another's predictions and
    metrics. The earlier run's model stays until the new run saves its own. With an ``accelerator`` only the
    main process removes anything."""
    from .runlock import the_run_has_started

    the_run_has_started()  # (a failure from here leaves the run folder it made: it holds the run's work)
    if accelerator is not None and not accelerator.is_main_process:
        return []
    key = os.path.abspath(out_dir)
    if key in _cleared:
        return []
    _cleared.add(key)
    removed = []
    for name in RESULTS:
        p = Path(out_dir) / name
        if p.is_file() or p.is_symlink():
            p.unlink()
            removed.append(p)
    said = " ".join(p.name for p in removed)
    if curves is not None and _remove_curves(Path(curves)):
        said += (", " if said else "") + f"its TensorBoard curves ({Path(curves).name}/)"
    if said:
        print(f"removed the results of an earlier run in {shell_path(out_dir)}: {said}")
    return removed


_HPARAMS_FOLDER = re.compile(r"^[0-9]+(\.[0-9]+)?\Z")  # the TensorBoard tracker's hparams, one per run, named by
#                                                         time.time() (ASCII digits: \d takes any script's)


def _remove_curves(folder: Path) -> bool:
    """TensorBoard's event files in ``folder`` and in the hparams folders inside it; whether there were any."""
    if not folder.is_dir():
        return False
    found = False
    # (a link of that name is not followed: another run's hparams folder, linked there to be viewed beside these)
    for sub in [folder] + [p for p in folder.iterdir()
                           if p.is_dir() and not p.is_symlink() and _HPARAMS_FOLDER.match(p.name)]:
        for f in sub.iterdir():
            if f.is_file() and (f.name.startswith("events.out.tfevents.")
                                or (sub != folder and f.name == "hparams.yml")):
                f.unlink()
                found = True
        if sub != folder and not any(sub.iterdir()):
            sub.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()
    return found


def write_metrics(args, accelerator, **metrics) -> dict:
    """Write ``metrics.json`` into the run folder (main process) and print the numbers. A number that is not
    finite is written as null (JSON has no NaN: ``jq`` and JavaScript would not read the file): R² of test
    rows whose ``y`` is constant (one row, say) is undefined."""
    out = Path(args.output_dir)
    metrics = {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in metrics.items()}
    metrics = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in metrics.items()}
    if accelerator is None or accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "metrics.json") as tmp:
            with open(tmp, "w") as f:
                json.dump(metrics, f, indent=1, allow_nan=False)
                f.write("\n")
        rmse = "not a number" if metrics["test_rmse"] is None else f"{metrics['test_rmse']:.4f}"
        r2 = ("undefined (y is the same in every test row)" if metrics["test_r2"] is None
              else f"{metrics['test_r2']:.4f}")
        print(f"test RMSE {rmse}  R² {r2}  (original units of y, "
              f"{metrics.get('test_rows', '?')} test rows)")
        print(f"trained {counted(metrics['epochs'], 'epoch')} in {metrics['train_seconds']:.1f} s, "
              f"{metrics['samples_per_second']:.0f} samples/s on {metrics['world_size']} process(es)")
        print(f"-> {shell_path(out / 'metrics.json')}")
    return metrics


def write_predictions(y_true, y_pred, stats_path, out_csv, accelerator=None) -> Path:
    """Test predictions in original units: ``y_true,y_pred`` CSV written by the C++ denormalizer.

    The normalized pairs go to a temporary ``.npy`` beside ``out_csv`` and ``wideann denormalize`` turns
    them back with the target column's stats (``--columns y y``). The free space is checked first.
    """
    out_csv = Path(out_csv)
    if accelerator is not None and not accelerator.is_main_process:
        return out_csv
    pairs = np.stack([np.asarray(y_true, np.float32).ravel(), np.asarray(y_pred, np.float32).ravel()], axis=1)
    bad = np.flatnonzero(~np.isfinite(pairs).all(axis=1))
    if bad.size:  # (the engine would name its temporary file; the lessons check the test rows before training)
        k = int(bad[0])
        what = "true y" if not np.isfinite(pairs[k, 0]) else "model's prediction"
        raise LessonError(f"{shown(out_csv)}: the {what} of test row {k + 1} (of {len(pairs)}) is "
                          f"{pairs[k, 0 if what == 'true y' else 1]}, not a finite number: nothing to write; "
                          "lower --lr, or look for nan or inf in the test table")
    # the .npy, then the CSV (up to 2 x 25 characters a row) and its copy with the final header
    need = pairs.nbytes + 2 * (64 * len(pairs) + 4096)
    what = f"the predictions {out_csv.name}"
    require_free(out_csv, need, what)
    pause("predictions-begin")
    made: list = []  # the hidden .npy (see temp_name); one a killed run left is removed by --resume
    try:
        try:
            tmp = Path(temp_name(out_csv, made, suffix=".tmp.npy"))
            with open(tmp, "wb") as f:
                np.save(f, pairs)
            names = Stats.load(stats_path).columns
            target = names[-1]
            # the target by name, or by position when another column has its name (the first would be taken)
            column = target if names.count(target) == 1 else -1
            # (what the command line would do; the pairs' .npy is a temporary file, removed once this is done) the
            # name quoted as a file name is, and by position where the command line would take it for a position
            # (digits) or for an option (a leading "-")
            said = "-1" if column == -1 or is_a_position(column) or column.startswith("-") \
                else shell_word(column)
            print("denormalizing with the C++ engine, as  wideann denormalize PAIRS.npy -o "
                  f"{shell_path(out_csv)} --stats {shell_path(stats_path)} --columns {said} {said}  would "
                  "(PAIRS.npy: the normalized y_true,y_pred pairs, a temporary file)")
            denormalize(tmp, out_csv, stats=stats_path, columns=[column, column])
        finally:
            remove_listed(made)
        # the engine names both columns after the stats column (y,y); say which is which (in UTF-8, as the
        # engine writes: not in the locale's encoding, which may be Latin-1 or unable to spell the name)
        text = out_csv.read_bytes()
        first, _, rest = text.partition(b"\n")
        if first.count(b",") == 1:
            with atomic_path(out_csv) as t:
                Path(t).write_bytes(f"{target}_true,{target}_pred\n".encode("utf-8") + rest)
    except Exception as e:
        raise disk_full(e, out_csv.parent, what, need) from e
    return out_csv


def tensor_bytes(obj) -> int:
    """Bytes of the tensors in a (nested) state dict."""
    if hasattr(obj, "element_size") and hasattr(obj, "numel"):
        return obj.element_size() * obj.numel()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def disk_full(e: BaseException, folder, what: str, need: int) -> BaseException:
    """``e``, or a :class:`NotEnoughSpace` when ``e`` came from a full disk. ``torch.save`` reports one as
    ``RuntimeError: ... unexpected pos``, so a write that failed where less than ``need`` bytes are free
    counts as one too."""
    if isinstance(e, (NotEnoughSpace, LessonError)):
        return e
    full = (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or "No space left" in str(e)
    if not full:
        try:
            full = shutil.disk_usage(folder).free < need
        except OSError:
            pass
    if not full:
        return e
    return NotEnoughSpace(errno.ENOSPC, f"the disk filled up while writing {what} (it needs about "
                                        f"{human_bytes(need)})", os.fspath(folder))


def fsync(path) -> None:
    """Data of a file (or the entries of a folder) on disk, not only in the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_model(model, path, accelerator=None, args=None, files=None) -> None:
    """The model's weights (its ``state_dict``; a plain state dict is taken too) to ``path``: written to a
    temporary name, then renamed, so a best-model file is never half-written, and never written in place
    (checkpoints keep hard links to the one of their time).

    Given the lesson's ``args`` and ``files`` (from :func:`prepare_data`), it also writes what is needed
    to use the model on new data: ``model.json`` beside it (the layers, the options, the training
    table's dtype; see :mod:`wideann.modelcard`) and a copy of the training stats, ``stats.json``.
    ``wideann predict RUN_DIR NEW.csv -o OUT.csv`` reads them.

    The free space is checked first. With an ``accelerator`` only the main process writes, and every
    process learns whether it worked: call it on all of them.
    """
    import torch

    from .runlock import the_run_has_started

    # (the run has trained: a failure from here, a model that diverged included, leaves the folders it made, with
    # the tables it normalized into them; lesson 1 clears no results before it trains)
    the_run_has_started()
    error = None
    if accelerator is None or accelerator.is_main_process:
        path = Path(path)
        state = model.state_dict() if hasattr(model, "state_dict") else model
        need = tensor_bytes(state) + 4096 * len(state) + (64 << 10)
        what = f"the model {path.name}"
        try:
            odd = next((k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()
                        and not bool(torch.isfinite(v).all())), None)
            if odd is not None:  # a model that would predict nan: nothing to save, nothing to test
                raise LessonError(f"training diverged: the model's weights ({odd}) are not numbers (nan or inf); "
                                  "lower --lr")
            require_free(path, need, what)
            pause("model-begin")
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:  # (a file object: given a path, torch.save names the archive's records
                    torch.save(state, f)  # after it, the random temporary name, so equal models differed in bytes)
                fsync(tmp)
                pause("model-written")
                clear_results(path.parent)  # the earlier run's results go as its model is replaced
            pause("model-saved")
            if files is not None and hasattr(model, "state_dict"):
                from .. import modelcard

                modelcard.write(model, path.parent, path.name, stats_path=files.stats_path, train=files.train,
                                options=vars(args) if args is not None else None, lesson=Path(sys.argv[0]).name)
        except Exception as e:  # noqa: BLE001 - raised again by settle
            error = disk_full(e, path.parent, what, need)
            if error is not e:
                error.__cause__ = e
    settle(accelerator, error)
