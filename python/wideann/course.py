"""Plumbing the four lessons in ``scripts/`` share, kept out of them so they read as lessons.

- :func:`run`: runs a lesson's ``main()``; a user's mistake (wrong option, bad or missing data, a full
  disk) ends as one line on stderr and exit code 2 (options) or 1 (data, files), not a traceback.
- :func:`parser`: the command-line options every lesson has (each lesson adds its own), with range checks
  (:func:`positive_int`, :func:`non_negative_int`, :func:`positive_float`, :func:`non_negative_float`,
  :func:`probability`), ``--quiet``
  included (no progress bars; the bars themselves are :mod:`wideann.progress`).
- :func:`add_tracking_options`, :func:`tracker_config`, :func:`tracker_kwargs`: ``--log-with`` /
  ``--log-every`` for accelerate's experiment trackers (a tracker that is unknown or not installed is a
  one-line usage error, exit code 2), and what ``accelerator.init_trackers`` is given.
- :func:`prepare_data`: finds the table to train on. With no ``--data`` it takes the shipped example
  CSV (``data/example.csv``) and normalizes it with the C++ engine into the run folder, printing the
  ``wideann normalize`` command it ran; CSV files given with ``--data`` / ``--test-data`` are handled
  the same way; ``.npy`` tables (one file, several shards or a folder of them) are used as they are,
  with their stats file (beside them, or ``--stats``), after checking that the shards agree.
- :func:`write_metrics`: ``metrics.json`` in the run folder, and the same numbers printed.
- :class:`Checkpoints`: complete-or-absent checkpoints for ``--resume``, loaded weights-only, that refuse
  a resume with other options.
- :func:`save_model`: the model's weights, and beside them ``model.json`` and ``stats.json`` for
  ``wideann predict`` (see :mod:`wideann.modelcard`).
- :func:`write_predictions`: test predictions back in original units through the C++ denormalizer.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import re
import shlex
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ._atomic import atomic_path
from .diskspace import NotEnoughSpace, human_bytes, require_free
from .engine import DataError, default_stats_path, denormalize, normalize
from .stats import Stats

EXAMPLE_NAME = "example.csv"


class LessonError(Exception):
    """A mistake in the user's data or files (not a bug of ours): reported as one line, exit code 1."""
    exit_code = 1


class UsageError(LessonError):
    """A wrong option or combination of options: reported as one line, exit code 2 (argparse's way)."""
    exit_code = 2


# ---- errors ---------------------------------------------------------------------------------
_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _is_main_rank() -> bool:
    """The process that speaks for all: global rank 0 (``RANK`` is set by torchrun / accelerate launch)."""
    return os.environ.get("RANK", "0") == "0"


def _program() -> str:
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "lesson"


def user_error(e: BaseException) -> tuple[int, str] | None:
    """``(exit code, one line)`` when ``e`` is the user's mistake rather than a bug of ours, else None.

    The user's: :class:`LessonError` / :class:`UsageError`, the engine's ``DataError`` (its line names
    file, line and column), a table too small to split, rows forced into a resident tier they do not fit, and file-system errors about the user's files
    or disk (an ``OSError`` that names a file, or a full disk, a read-only file system, no permission).
    A missing file is not among them: the lessons check the files the user names, so a file missing
    later is a bug of ours (or a file deleted under a running lesson) and keeps its traceback.
    """
    from .data import TierDoesNotFit, TooFewRows
    from .engine import DataError

    if isinstance(e, LessonError):
        return e.exit_code, _one_line(str(e))
    if isinstance(e, (DataError, TooFewRows, TierDoesNotFit)):
        return 1, _one_line(str(e))
    if isinstance(e, OSError) and e.errno != errno.ENOENT and (e.filename is not None or e.errno in _USER_ERRNOS):
        what = e.strerror or str(e)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            what += ": free some space and run again (with --resume if the run has saved a checkpoint)"
        return 1, _one_line(f"{e.filename}: {what}" if e.filename is not None else what)
    return None


def _one_line(msg: str) -> str:
    return " ".join(msg.split())


def _from_a_peer(e: BaseException) -> bool:
    """An error raised inside ``torch.distributed`` (a collective whose peer process has gone)."""
    tb = traceback.extract_tb(e.__traceback__)
    return isinstance(e, RuntimeError) and bool(tb) and "torch/distributed/" in tb[-1].filename.replace("\\", "/")


def run(main) -> None:
    """Run a lesson's ``main()``, the way a command-line tool ends.

    A user's mistake (see :func:`user_error`) is printed as one line, ``<lesson>.py: error: <what is
    wrong and what to do>``, and the process exits with 2 for wrong options, 1 for bad data or files.
    Under several processes only the main one (global rank 0) prints: the lessons check the options and
    the data on every process, and the steps that can fail on one process alone (writing or loading a
    checkpoint, the data on each machine) tell every process, so the main one always knows. Errors of
    the other processes inside ``torch.distributed`` (a peer process has ended) are left unsaid: their
    cause is reported by the process that failed. Ctrl-C ends with exit code 130. Anything else is a bug
    of ours and keeps its traceback. A run of several processes ends without the interpreter's
    teardown, finished or not (see :func:`_exit`).
    """
    try:
        main()
    except KeyboardInterrupt:
        if _is_main_rank():
            print(f"{_program()}: interrupted", file=sys.stderr, flush=True)
        _exit(130)
    except Exception as e:  # noqa: BLE001 - sorted below; bugs are raised again
        found = user_error(e)
        if found is None:
            if not _is_main_rank() and _from_a_peer(e):
                _exit(1)
            raise
        code, line = found
        if _is_main_rank():
            print(f"{_program()}: error: {line}", file=sys.stderr, flush=True)
        else:
            _let_the_main_process_speak()
        _exit(code)
    if _distributed():  # finished: everything is written and closed
        _exit(0)


SPEAK_WAIT_S = 10.0
"""How long a process other than the main one waits, after an error, for the main one to report it."""


def _let_the_main_process_speak() -> None:
    """After an error that the main process reports (it fails at the same point: see :func:`run`), the
    others wait for it to print its line and end -- at most :data:`SPEAK_WAIT_S` -- before they end.
    The launcher (``accelerate launch``, torchrun) ends every process as soon as one of them has failed:
    a process that ended first could have the main one killed before it had said why."""
    if _distributed():
        time.sleep(SPEAK_WAIT_S)


def _distributed() -> bool:
    """Whether this process is one of several: a process group is up, or was (``WORLD_SIZE`` > 1 under
    ``accelerate launch``; ``end_training`` destroys the group, but its threads stay until the process ends)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available():
        return False
    return dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def _exit(code: int) -> None:
    """``sys.exit(code)``; in a run of several processes, flushed stdout and stderr and ``os._exit(code)``,
    without the interpreter's teardown. torch's process-group threads can abort the process ("terminate
    called without an active exception") once a peer process has gone, or when one of them is still
    releasing the tensors of the last collective as the interpreter tears down: it then needs the GIL
    that the teardown no longer hands out (lesson 4 on two CPU processes, about one finished run in 25,
    seen in a core dump of the gloo thread)."""
    if _distributed():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


# ---- several processes ----------------------------------------------------------------------
class _PeerFailed(LessonError):
    """Another process failed at a step that every process takes together (its one-line report)."""


def _settle(accelerator, error: BaseException | None, on_failure=None) -> None:
    """Every process learns whether any of them failed at a step they take together, and all raise.

    The process that failed raises its own error again; the others raise :class:`_PeerFailed` with its
    one-line report, so that the main process, the one :func:`run` lets speak, can always say what went
    wrong, and no process is left waiting for one that has ended. ``on_failure`` (cleanup) runs on the
    main process first. Every process must call this at the same points.
    """
    reports = [None if error is None else "failed"]
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        mine = None
        if error is not None:
            mine = user_error(error) or (1, f"process {accelerator.process_index} failed: {type(error).__name__}: "
                                            f"{_one_line(str(error))} (its traceback is above)")
        reports = gather_object([mine])
    failed = [r for r in reports if r is not None]
    if not failed:
        return
    if on_failure is not None and (accelerator is None or accelerator.is_main_process):
        with contextlib.suppress(Exception):
            on_failure()
    if error is not None:
        raise error
    code, line = failed[0]
    peer = _PeerFailed(line)
    peer.exit_code = code
    raise peer


def _in_turn(accelerator, work):
    """``work()`` on the first process of each machine, then on the others (which find its files made);
    a failure anywhere ends every process, with the failure's one line said once."""
    if accelerator is None:
        return work()
    result = None
    for first in (True, False):
        error = None
        if accelerator.is_local_main_process is first:
            try:
                result = work()
            except Exception as e:  # noqa: BLE001 - raised again by _settle, on every process
                error = e
        _settle(accelerator, error)
    return result


_pauses: dict[str, int] = {}


def _pause(point: str) -> None:
    """Test hook at the moments a kill or a full disk matters most (``checkpoint-begin``,
    ``checkpoint-written``, ``checkpoint-pruning``, ``model-begin``, ``model-written``, ``model-saved``,
    ``predictions-begin``).

    With ``WIDEANN_TEST_PAUSE=<point>[:<n>]`` the main process stops itself (SIGSTOP) the n-th time it
    reaches ``point``, after writing its pid into the file ``WIDEANN_TEST_PAUSE_FILE``: a test can then
    kill it there, or fill its disk and let it go on (SIGCONT). Without the variable, nothing happens.
    """
    want = os.environ.get("WIDEANN_TEST_PAUSE")
    if not want or not _is_main_rank():
        return
    name, _, nth = want.partition(":")
    if name != point:
        return
    _pauses[point] = _pauses.get(point, 0) + 1
    if _pauses[point] != int(nth or 1):
        return
    report = os.environ.get("WIDEANN_TEST_PAUSE_FILE")
    if report:
        with atomic_path(report) as tmp:
            Path(tmp).write_text(f"{os.getpid()}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSTOP)


# ---- options --------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, with its errors raised as :class:`UsageError` (one line, printed once by :func:`run`)
    and its help printed by the main process only."""

    def error(self, message):
        raise UsageError(f"{message} (see --help)")

    def _print_message(self, message, file=None):
        if _is_main_rank():
            super()._print_message(message, file)


def _number(text: str, kind):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    n = _number(text, int)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return n


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    n = _number(text, int)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return n


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    x = _number(text, float)
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return x


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    x = _number(text, float)
    if not (math.isfinite(x) and x >= 0):
        raise argparse.ArgumentTypeError(f"must be a number of 0 or more, got {text}")
    return x


def probability(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    x = _number(text, float)
    if not 0 <= x < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return x


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, except None (an option the lesson fills in, or one that is simply off)."""
    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def parser(doc: str | None, lesson: str, *, epochs: int | None, batch_size: int | None,
           lr: float) -> argparse.ArgumentParser:
    """The options every lesson takes; ``lesson`` names the default run folder ``runs/<lesson>/``.

    ``epochs`` or ``batch_size`` None: the lesson chooses it from the table (:mod:`wideann.defaults`).
    Wrong options are :class:`UsageError` s (exit code 2), reported in one line by :func:`run`."""
    from . import defaults

    first = (doc or "").strip().splitlines()[0] if doc else lesson
    p = _Parser(description=first, formatter_class=_HelpFormatter)
    p.add_argument("--data", nargs="+", metavar="T", help="training table: a normalized .npy (stats file beside "
                   "it), several .npy shards of one table or a folder of them (read as one table, in the order given; "
                   "a folder's in name order), or raw CSV files, normalized into the run folder (default: the shipped "
                   "example data/example.csv)")
    p.add_argument("--test-data", nargs="+", metavar="T", help="a separate test table (.npy file(s) or folder, "
                   "normalized with the training stats, or raw CSV files); default: a seeded split of --data")
    p.add_argument("--stats", help="stats file of --data (default: beside it, t.npy -> t.stats.json; for shards "
                   "normalized with merged stats: the merged file)")
    p.add_argument("--epochs", type=positive_int, default=epochs, help="passes over the training rows"
                   + ("" if epochs else "; " + defaults.help_text("epochs")))
    p.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help=defaults.help_text("batch_size") if batch_size is None else "rows per training step (per process)")
    p.add_argument("--lr", type=positive_float, default=lr, help="learning rate")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the split, the shuffling and the initial weights")
    p.add_argument("--output-dir", default=os.path.join("runs", lesson), help="where the run writes its files")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars (they show only on a terminal)")
    return p


# ---- experiment tracking --------------------------------------------------------------------
# the package each of accelerate's trackers needs (pip names)
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio", "aim": "aim",
                    "comet_ml": "comet-ml", "mlflow": "mlflow", "clearml": "clearml", "dvclive": "dvclive",
                    "swanlab": "swanlab"}


class _Trackers(argparse.Action):
    """``--log-with``: names of accelerate trackers, each checked to be known and installed (accelerate
    itself would silently drop one that is not installed)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from accelerate.tracking import get_available_trackers
        from accelerate.utils import LoggerType

        known = LoggerType.list()
        installed = [str(t) for t in get_available_trackers()]
        for name in values:
            if name not in known:
                parser.exit(2, f"{parser.prog}: error: argument {option_string}: unknown tracker {name!r} "
                               f"(choose from {', '.join(known)})\n")
            if name == "all" and not installed:
                parser.exit(2, f"{parser.prog}: error: argument {option_string}: no tracker is installed "
                               f"(pip install tensorboard, for example)\n")
            if name != "all" and name not in installed:
                parser.exit(2, f"{parser.prog}: error: argument {option_string}: the {name} tracker is not "
                               f"installed (pip install {TRACKER_PACKAGES.get(name, name)})\n")
        setattr(namespace, self.dest, list(dict.fromkeys(values)))


def add_tracking_options(p: argparse.ArgumentParser) -> None:
    """``--log-with TRACKER...`` and ``--log-every N``: experiment tracking through accelerate."""
    p.add_argument("--log-with", nargs="+", action=_Trackers, metavar="TRACKER",
                   help="log the run to these experiment trackers (accelerate's: tensorboard, wandb, mlflow, "
                        "comet_ml, aim, clearml, dvclive, swanlab, trackio, or all installed ones); "
                        "tensorboard writes into OUTPUT_DIR/<lesson>/")
    p.add_argument("--log-every", type=positive_int, default=10, metavar="N",
                   help="log the training loss and learning rate every N steps")


def tracker_kwargs(first_step: int = 1) -> dict:
    """``init_kwargs`` for ``accelerator.init_trackers``, given the first step this run will log:
    TensorBoard drops what an earlier run in the same folder logged from that step on. So a new run
    (step 1) does not draw over an old one's curves, and a run resumed from the checkpoint of step S
    (first step S + 1) continues them without the interrupted run's tail."""
    return {"tensorboard": {"purge_step": int(first_step)}}


def tracker_config(args) -> dict:
    """The options as the trackers take them (numbers, strings and flags; a list becomes ``"128 64"``)."""
    out = {}
    for key, value in vars(args).items():
        if isinstance(value, (list, tuple)):
            value = " ".join(map(str, value))
        elif value is None:
            value = "none"
        elif not isinstance(value, (bool, int, float, str)):
            value = str(value)
        out[key] = value
    return out


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
    raise LessonError("the example data data/example.csv was not found: run from the wideann source tree, "
                      "or pass --data")


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
            raise LessonError(f"{option} {p}: no such file")
        if p.is_dir() and not any(q.suffix.lower() == ".npy" and q.is_file() for q in p.iterdir()):
            raise LessonError(f"{option} {p}: is a folder without .npy tables; give .npy tables (files, or a "
                              "folder of shards) or raw CSV files")
    csvs = [p for p in items if p.is_file() and p.suffix.lower() != ".npy"]
    if csvs and len(csvs) != len(items):
        raise UsageError(f"{option}: give .npy tables (files or folders) or raw CSV files, not both")
    if csvs:
        return "csv", csvs
    return "npy", _data_call(data_pkg().table_paths, items, option=option)


def data_pkg():
    from . import data

    return data


def _data_call(fn, *args, option: str = "", **kw):
    """A call into wideann.data whose data errors are the user's: one line (after ``option``, the option
    that named the table), exit 1."""
    try:
        return fn(*args, **kw)
    except (DataError, ValueError) as e:  # DataError is a ValueError; both name the file
        raise LessonError(f"{option} {e}" if option else str(e)) from None


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
        if args.stats:
            _require_file(Path(args.stats), "--stats")
        if kind == "npy":
            train = found
            stats_path, _ = _data_call(data.table_stats, train, args.stats, option="--data")
        else:
            if not args.data:
                say(f"no --data given: using the example data {_shell_path(found[0])}")
            table, stats_path = _normalize_csv(found, data_dir, args.stats, say)
            train = [table]
        test = None
        if args.test_data:
            kind, found = _table_files("--test-data", args.test_data)
            test = found if kind == "npy" else [_normalize_csv(found, data_dir / "test", stats_path, say)[0]]
        return train, test, stats_path, _check_tables(train, test, stats_path)

    # one process per machine normalizes; the others then find its files up to date
    train, test, stats_path, stats = _in_turn(accelerator, work)
    return SimpleNamespace(train=train, test=test, stats_path=stats_path, stats=stats)


def _require_file(path: Path, option: str) -> None:
    if path.is_dir():
        raise LessonError(f"{option} {path}: is a folder, expected a file")
    if not path.is_file():
        raise LessonError(f"{option} {path}: no such file")


def _name(paths: list[Path]) -> str:
    """A table's name in a message: its file, or its first shard and how many more."""
    return f"{paths[0]}" + (f" (+{len(paths) - 1} shards)" if len(paths) > 1 else "")


def _table_shape(paths: list[Path], option: str) -> tuple[int, int]:
    """Rows and columns of a table (the headers of its shards only); a broken file is the user's mistake."""
    with _data_call(data_pkg().open_table, paths, option=option) as t:
        rows, cols = t.n_rows, t.n_columns
    if rows < 1:
        raise LessonError(f"{option} {_name(paths)}: the table has no rows")
    if cols < 2:
        raise LessonError(f"{option} {_name(paths)}: a table needs input columns and the target y (the last "
                          f"column); this one has {cols} column")
    return rows, cols


def _check_tables(train: list[Path], test: list[Path] | None, stats_path: Path) -> Stats:
    """The stats file and the tables belong together: same columns, test data normalized with the
    training stats. Shards that disagree with each other (columns, dtype) are refused naming the odd one.
    Returns the stats."""
    try:
        stats = Stats.load(stats_path)
    except ValueError as e:
        raise LessonError(f"{_one_line(str(e))} (the stats file of {_name(train)})") from None
    _, cols = _table_shape(train, "--data")
    if cols != stats.n_columns:
        raise LessonError(f"{stats_path} describes {stats.n_columns} columns but {_name(train)} has {cols}: it is "
                          f"the stats file of another table; give the one written with {train[0].name} (--stats)")
    if test is not None:
        _, test_cols = _table_shape(test, "--test-data")
        if test_cols != cols:
            raise LessonError(f"--test-data {_name(test)} has {test_cols} columns but the training table "
                              f"{_name(train)} has {cols}: the test table must have the training table's columns, "
                              f"normalized with its stats (wideann normalize TEST.csv -o TEST.npy --stats {stats_path})")
        for shard in test:
            own = Path(default_stats_path(shard))
            if shard.suffix.lower() == ".npy" and own.is_file() and own.resolve() != stats_path.resolve():
                try:
                    same = Stats.load(own).same_transform(stats)
                except ValueError:
                    same = False
                if not same:
                    raise LessonError(f"--test-data {shard} was normalized with its own stats ({own}), not with "
                                      f"the training table's: its numbers would mean something else; normalize the "
                                      f"test CSV again with --stats {stats_path}")
    return stats


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
    them back with the target column's stats (``--columns y y``). The free space is checked first.
    """
    out_csv = Path(out_csv)
    if accelerator is not None and not accelerator.is_main_process:
        return out_csv
    pairs = np.stack([np.asarray(y_true, np.float32).ravel(), np.asarray(y_pred, np.float32).ravel()], axis=1)
    # the .npy, then the CSV (up to 2 x 25 characters a row) and its copy with the final header
    need = pairs.nbytes + 2 * (64 * len(pairs) + 4096)
    what = f"the predictions {out_csv.name}"
    require_free(out_csv, need, what)
    _pause("predictions-begin")
    tmp = out_csv.with_name(out_csv.stem + ".normalized.npy")
    try:
        try:
            np.save(tmp, pairs)
            target = Stats.load(stats_path).columns[-1]
            print("denormalizing with the C++ engine:  wideann denormalize " f"{_shell_path(tmp)} -o "
                  f"{_shell_path(out_csv)} --stats {_shell_path(stats_path)} --columns {target} {target}")
            denormalize(tmp, out_csv, stats=stats_path, columns=[target, target])
        finally:
            tmp.unlink(missing_ok=True)
        # the engine names both columns after the stats column (y,y); say which is which
        text = out_csv.read_text()
        first, _, rest = text.partition("\n")
        if first.count(",") == 1:
            with atomic_path(out_csv) as t:
                Path(t).write_text(f"{target}_true,{target}_pred\n" + rest)
    except Exception as e:
        raise _disk_full(e, out_csv.parent, what, need) from e
    return out_csv


def _tensor_bytes(obj) -> int:
    """Bytes of the tensors in a (nested) state dict."""
    if hasattr(obj, "element_size") and hasattr(obj, "numel"):
        return obj.element_size() * obj.numel()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _disk_full(e: BaseException, folder, what: str, need: int) -> BaseException:
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


def _fsync(path) -> None:
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

    error = None
    if accelerator is None or accelerator.is_main_process:
        path = Path(path)
        state = model.state_dict() if hasattr(model, "state_dict") else model
        need = _tensor_bytes(state) + 4096 * len(state) + (64 << 10)
        what = f"the model {path.name}"
        try:
            require_free(path, need, what)
            _pause("model-begin")
            with atomic_path(path) as tmp:
                torch.save(state, tmp)
                _fsync(tmp)
                _pause("model-written")
            _pause("model-saved")
            if files is not None and hasattr(model, "state_dict"):
                from . import modelcard

                modelcard.write(model, path.parent, path.name, stats_path=files.stats_path, train=files.train,
                                options=vars(args) if args is not None else None, lesson=Path(sys.argv[0]).name)
        except Exception as e:  # noqa: BLE001 - raised again by _settle
            error = _disk_full(e, path.parent, what, need)
            if error is not e:
                error.__cause__ = e
    _settle(accelerator, error)


# ---- checkpoints ----------------------------------------------------------------------------
_CKPT = re.compile(r"^step_(\d+)$")
CHECKPOINT_INFO = "checkpoint.json"
"""Written last into a checkpoint folder, before it is renamed to ``step_N``: what it is, when it was
made, by how many processes, and the run's options."""

RESUME_FREE_OPTIONS = frozenset({"resume", "output_dir", "checkpoint_every"})
"""Options that ``--resume`` may change: they do not change what the run computes."""

_PATH_OPTIONS = frozenset({"data", "test_data", "stats"})
_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what atomic_path writes before the rename

_RNG_SAFE_GLOBALS = [getattr(np, "_core", getattr(np, "core", None)).multiarray._reconstruct, np.ndarray,
                     np.dtype, type(np.dtype(np.uint32)), __import__("codecs").encode]
"""What numpy's random state in accelerate's ``random_states_N.pkl`` is made of (accelerate's own list)."""


def _info(path: Path) -> dict | None:
    """The ``checkpoint.json`` of a complete checkpoint folder, else None."""
    try:
        with open(path / CHECKPOINT_INFO) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("format") == "wideann-checkpoint" else None


def _checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first: by the time they were completed, then step. (A new run in a
    folder that still holds an old run's later steps must not resume from those.)"""
    found = []
    for p in folder.iterdir() if folder.is_dir() else []:
        m = _CKPT.match(p.name)
        info = _info(p) if m and p.is_dir() else None
        if info is not None:
            found.append((info.get("completed_ns", 0), int(m.group(1)), p))
    return [p for *_, p in sorted(found)]


def latest_checkpoint(folder) -> Path | None:
    """The newest complete checkpoint ``folder/step_N`` (None if there is none)."""
    found = _checkpoints(Path(folder))
    return found[-1] if found else None


def _plain(v):
    """An option's value as JSON can hold it."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return os.fspath(v) if isinstance(v, os.PathLike) else str(v)


def _options(args) -> dict:
    """The run's options as JSON values, paths made absolute."""
    out = {}
    for k, v in sorted(vars(args).items()):
        if k in _PATH_OPTIONS and v is not None:
            v = [os.path.realpath(x) for x in v] if isinstance(v, (list, tuple)) else os.path.realpath(v)
        out[k] = _plain(v)
    return out


def _option_text(value) -> str:
    if value is None:
        return "not given"
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


@contextlib.contextmanager
def _weights_only_loads():
    """Every ``torch.load`` inside is ``weights_only=True`` (PyTorch's TORCH_FORCE_WEIGHTS_ONLY_LOAD):
    accelerate loads the objects registered with ``register_for_checkpointing`` with ``weights_only=False``."""
    saved = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_weights_only(path, process_index: int = 0) -> None:
    """Refuse a checkpoint folder (or file) holding a file that ``torch.load(weights_only=True)`` would not
    load: one that holds more than tensors and plain values, whose loading could run code. Reads every
    file one process loads: the pickled ones weights-only, the safetensors ones by their header."""
    import pickle

    import torch

    path = Path(path)
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    for f in files:
        m = re.match(r"^random_states_(\d+)\.pkl$", f.name)
        if f.name == CHECKPOINT_INFO or not f.is_file() or (m and int(m.group(1)) != process_index):
            continue
        try:
            if f.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(f, framework="pt"):
                    pass
            else:
                with torch.serialization.safe_globals(_RNG_SAFE_GLOBALS):
                    torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise LessonError(f"{f}: refused: this checkpoint file holds more than tensors and plain values, and "
                              "loading it could run code (no lesson writes such a file); resume from another "
                              "checkpoint, or start again without --resume") from None
        except Exception as e:  # noqa: BLE001 - a damaged file is the user's problem, said in one line
            raise LessonError(f"{f}: this checkpoint file cannot be read ({_one_line(str(e))[:200]}); resume "
                              "from another checkpoint, or start again without --resume") from None


class Checkpoints:
    """The checkpoints of one run, ``folder/step_N``: each complete or absent, loaded weights-only.

    ``files`` (the best model so far) are kept with every checkpoint, as hard links (a copy where links
    are not possible), and put back by :meth:`load`: a resumed run's ``best_model.pt`` is the one of the
    checkpoint's time, never one written after it. ``args`` are saved with every checkpoint and
    :meth:`load` refuses a resume with other options (but :data:`RESUME_FREE_OPTIONS`).
    """

    def __init__(self, folder, args, files=(), keep: int = 2):
        self.folder = Path(folder)
        self.options = _options(args)
        self.files = [Path(f) for f in files]
        self.keep = max(1, keep)

    def latest(self) -> Path | None:
        """The newest complete checkpoint (None if there is none)."""
        return latest_checkpoint(self.folder)

    def _remove(self, path: Path) -> None:
        """Out of the way in one rename (a half-deleted checkpoint is never found), then deleted."""
        trash = path.with_name(f".trash.{path.name}.{os.getpid()}")
        os.replace(path, trash)
        _pause("checkpoint-pruning")
        shutil.rmtree(trash, ignore_errors=True)

    def _size(self, accelerator, previous: Path | None) -> int:
        """What the next checkpoint will take: the tensors of the models and optimizers, a little for
        the rest, and at least what the previous one took (its own files: the kept ones are links)."""
        n = sum(_tensor_bytes(o.state_dict()) for o in
                list(getattr(accelerator, "_models", [])) + list(getattr(accelerator, "_optimizers", [])))
        n += (128 << 10) * accelerator.num_processes
        if previous is not None:
            kept = {f.name for f in self.files}
            n = max(n, sum(f.stat().st_size for f in previous.iterdir() if f.is_file() and f.name not in kept))
        return n

    def save(self, accelerator, step: int) -> Path:
        """``accelerator.save_state`` into ``folder/step_N``, complete or not at all.

        The state is written under a temporary name; the main process then adds the kept files and
        ``checkpoint.json``, syncs it all to disk and renames the folder. Only the newest ``keep``
        checkpoints stay; older ones are removed before the write (so the disk holds at most ``keep``,
        or 2 with ``keep=1``), the newest complete one never. The free space is checked first; a full
        disk ends the run with one line and leaves the checkpoints that were complete. Call it on every
        process; on several machines the folder must be one they share (as for ``save_state``).
        """
        final = self.folder / f"step_{step:08d}"
        tmp = self.folder / f".step_{step:08d}.tmp"
        what = f"checkpoint {final.name}"
        main = accelerator.is_main_process
        need, error = 0, None
        if main:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                for p in self.folder.iterdir():  # what killed saves left behind
                    if p.name.startswith((".step_", ".trash.")):
                        shutil.rmtree(p) if p.is_dir() else p.unlink()
                others = [c for c in _checkpoints(self.folder) if c.name != final.name]
                for old in others[:len(others) - max(self.keep - 1, 1)]:
                    self._remove(old)
                need = self._size(accelerator, self.latest())
                require_free(self.folder, need, what)
                tmp.mkdir()
            except Exception as e:  # noqa: BLE001 - raised again by _settle
                error = e
        _settle(accelerator, error)
        _pause("checkpoint-begin")
        try:
            accelerator.save_state(str(tmp))
        except Exception as e:  # noqa: BLE001
            error = _disk_full(e, self.folder, what, need or (1 << 20))
        _settle(accelerator, error, on_failure=lambda: shutil.rmtree(tmp, ignore_errors=True))
        if main:
            try:
                for f in self.files:
                    if f.is_file():
                        _link_or_copy(f, tmp / f.name)
                info = {"format": "wideann-checkpoint", "version": 1, "step": step,
                        "processes": accelerator.num_processes, "files": [f.name for f in self.files],
                        "options": self.options, "completed_ns": time.time_ns()}
                (tmp / CHECKPOINT_INFO).write_text(json.dumps(info, indent=1) + "\n")
                for f in tmp.iterdir():
                    _fsync(f)
                _fsync(tmp)
                _pause("checkpoint-written")
                if final.exists():  # the same step saved again (the end of an epoch): replace it
                    self._remove(final)
                os.replace(tmp, final)
                _fsync(self.folder)
                for old in _checkpoints(self.folder)[:-self.keep]:
                    self._remove(old)
            except Exception as e:  # noqa: BLE001
                error = _disk_full(e, self.folder, what, need)
        _settle(accelerator, error, on_failure=lambda: shutil.rmtree(tmp, ignore_errors=True))
        return final

    def load(self, accelerator, which: str | None = "latest") -> Path:
        """``accelerator.load_state`` from ``which`` (a ``step_N`` folder, or "latest"), every file loaded
        weights-only; the kept files put back as they were then, and the temporary files a killed run
        left beside them removed. Returns the checkpoint's path.

        Refused, in one line: no checkpoint, a folder that is not a complete checkpoint, a run with other
        options or another number of processes than the checkpoint's, a file that is not weights-only.
        """
        path = self.latest() if which in (None, "latest") else Path(which)
        if path is None:
            raise LessonError(f"--resume: no checkpoint in {self.folder} to continue from (a run saves one every "
                              "--checkpoint-every steps and after every epoch); run without --resume to start")
        info = _info(path)
        if info is None:
            raise LessonError(f"--resume {path}: not a complete checkpoint (no {CHECKPOINT_INFO} in it); give a "
                              f"step_N folder of {self.folder}, or --resume alone for the newest")
        saved = info.get("options", {})
        differ = [k for k in sorted((set(saved) | set(self.options)) - RESUME_FREE_OPTIONS)
                  if saved.get(k) != self.options.get(k)]
        if differ:
            said = ", ".join(f"--{k.replace('_', '-')} {_option_text(saved.get(k))} (now: "
                             f"{_option_text(self.options.get(k))})" for k in differ)
            raise UsageError(f"--resume: the checkpoint {path} was made with other options: {said}; give the "
                             "options of the interrupted run")
        if info.get("processes") != accelerator.num_processes:
            raise UsageError(f"--resume: the checkpoint {path} was made by {info.get('processes')} process(es), "
                             f"this run has {accelerator.num_processes}: launch it as the interrupted run was")
        error = None
        try:
            check_weights_only(path, accelerator.process_index)
            with _weights_only_loads():
                accelerator.load_state(str(path))
        except Exception as e:  # noqa: BLE001 - raised again by _settle
            error = e
        _settle(accelerator, error)
        if accelerator.is_main_process:
            try:
                for folder in {f.parent for f in self.files}:  # what the killed run was writing
                    for p in folder.glob(".*.tmp") if folder.is_dir() else []:
                        if _TEMP.match(p.name) and p.is_file():
                            p.unlink()
                for f in self.files:
                    kept = path / f.name
                    if not kept.is_file():  # written after the checkpoint: the resumed run writes it again
                        f.unlink(missing_ok=True)
                    elif not (f.is_file() and os.path.samefile(kept, f)):  # not already the same file
                        with atomic_path(f) as t:
                            os.unlink(t)
                            _link_or_copy(kept, Path(t))
            except Exception as e:  # noqa: BLE001
                error = e
        _settle(accelerator, error)
        return path


def mixed_precision(requested: str | None) -> str:
    """The mixed precision to train with: ``requested`` if given, else the launcher's setting
    (``accelerate launch --mixed_precision`` or a config file), else bf16 on a GPU that has it.
    Without a GPU, a precision that came from a config falls back to full float32, with a note:
    bf16 on a CPU is slow where the CPU lacks bf16 instructions, and fp16 is GPU-only."""
    import torch

    if requested == "fp16" and not torch.cuda.is_available():
        raise UsageError("--mixed-precision fp16 needs a GPU; on the CPU use bf16 or no")
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
