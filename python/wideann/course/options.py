"""The command-line options every lesson has (:func:`parser`), their range-checked types
(:func:`positive_int`, :func:`non_negative_int`, :func:`positive_float`, :func:`non_negative_float`,
:func:`probability`), and the mixed precision a run trains with (:func:`mixed_precision`). Wrong options
are :class:`~wideann.course.errors.UsageError` s: one line, exit code 2."""
from __future__ import annotations

import argparse
import math
import os

from .errors import UsageError, is_main_rank, shown


class Options(argparse.Namespace):
    """A lesson's parsed options. ``lesson`` (its name: it names the default run folder and the folder of its
    tracked curves, ``OUTPUT_DIR/<lesson>/``) is a class attribute, out of ``vars(args)``: the options saved with
    a checkpoint, given to the trackers and written into a model card are the command line's alone."""

    lesson: str | None = None

    def __reduce__(self):  # (the class is made per lesson: pickled as its lesson and values)
        return options_of, (self.lesson, vars(self))


def options_of(lesson: str | None, values: dict | None = None) -> Options:
    """:class:`Options` of ``lesson`` holding ``values``."""
    return type("Options", (Options,), {"lesson": lesson})(**(values or {}))


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors raised as :class:`UsageError` (one line, printed once by :func:`run`)
    and its help printed by the main process only; the options come as :class:`Options` of its lesson."""

    several_processes = True  # (parser() says, per lesson)
    lesson: str | None = None

    def error(self, message):
        raise UsageError(f"{message} (see --help)")

    def parse_known_args(self, args=None, namespace=None):
        if namespace is None:
            namespace = options_of(self.lesson)
        got = super().parse_known_args(args, namespace)
        # lessons 1-3 do not share their rows between processes: N processes would each train on all of
        # them and write the same run folder, every file N times
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world > 1 and not self.several_processes:
            raise UsageError(f"this lesson trains on one process, and this launch started {world} (WORLD_SIZE="
                             f"{world}): run it with python, or accelerate launch without a multi-process config; "
                             "lesson 4 (4_multi_gpu_ann.py) trains on several")
        launcher = _launcher_options() if world == 1 and self.several_processes else []
        asked = _processes_asked(launcher)
        if asked and asked > 1:  # the trap of the course: --num_processes 2 without --multi_gpu starts ONE
            import sys
            print(f"{self.prog}: warning: accelerate launch was given --num_processes {asked} but started one "
                  f"process (WORLD_SIZE unset): {_why_one_process(launcher)}; for CPU processes: "
                  f"ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes {asked} ... (scripts/README.md: "
                  "A trap with several CPU processes)", file=sys.stderr, flush=True)
        return got

    def _print_message(self, message, file=None):
        if is_main_rank():
            super()._print_message(message, file)


def _launcher_cmdline() -> list[str]:
    """The command line of this process's parent (Linux), or [] where it cannot be read."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            return [os.fsdecode(a) for a in f.read().split(b"\0") if a]  # (a file name's bytes kept: shown())
    except OSError:
        return []


def _launcher_options() -> list[str]:
    """The options the parent ``accelerate launch`` was given (those before the script), else []: accelerate passes
    nothing of ``--num_processes`` on to a launch of one process, so that is where to see it."""
    argv = _launcher_cmdline()
    # accelerate launch, accelerate-launch, python -m accelerate.commands.launch (how the tests launch)
    start = next((i + 1 for i, a in enumerate(argv) if os.path.basename(a) in ("accelerate-launch",
                                                                              "accelerate.commands.launch")
                  or (a == "launch" and i and os.path.basename(argv[i - 1]) == "accelerate")), None)
    if start is None:
        return []
    end = next((i for i in range(start, len(argv)) if argv[i].endswith(".py")), len(argv))  # (the script's own after)
    return argv[start:end]


def _option(options: list[str], *flags: str) -> str | None:
    """The value given to one of ``flags`` (``--flag V`` or ``--flag=V``) among the launcher's ``options``."""
    for i, a in enumerate(options):
        for flag in flags:
            if a.startswith(flag + "="):
                return a[len(flag) + 1:]
            if a == flag and i + 1 < len(options):
                return options[i + 1]
    return None


def _processes_asked(options: list[str]) -> int | None:
    """The ``--num_processes`` (or ``--num-processes``) the launcher was given, else None."""
    value = _option(options, "--num_processes", "--num-processes")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _why_one_process(options: list[str]) -> str:
    """Why ``accelerate launch`` (given ``options``) started one process, as accelerate resolved it: its one-process
    launcher tells the process ``ACCELERATE_USE_CPU`` (``True`` for ``--cpu``, or a config's ``use_cpu: true``)."""
    if "--cpu" in options:
        return "--cpu starts one, whatever --num_processes (and cannot go with --multi_gpu)"
    if os.environ.get("ACCELERATE_USE_CPU", "").strip().lower() in ("true", "1", "yes"):
        config = _option(options, "--config_file", "--config-file")
        if config is None:
            try:
                from accelerate.commands.config import default_config_file as config
            except ImportError:
                config = "the default one"
        return (f"its accelerate config ({shown(config)}) says use_cpu: true, which launches one process without "
                "--multi_gpu")
    return "without --multi_gpu it starts one"


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


def seed(text: str) -> int:
    """argparse type: a seed, a whole number from 0 to 2**64 - 1 (what ``torch.manual_seed`` takes)."""
    n = non_negative_int(text)
    if n >= 2 ** 64:
        raise argparse.ArgumentTypeError(f"must be below 2**64, got {text}")
    return n


def folder(text: str) -> str:
    """argparse type: a folder's path, not empty (an unset variable would put the run into the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a folder's path, got an empty one")
    return text


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
    """Shows an option's default, except None (an option the lesson fills in, or one that is simply off) and a
    switch's (``--quiet``: "(default: False)" says nothing its name does not)."""
    def _get_help_string(self, action):
        if action.default is None or action.nargs == 0:
            return action.help
        if isinstance(action.default, (list, tuple)):  # as typed: "1024 256", not Python's "[1024, 256]"
            return f"{action.help} (default: {' '.join(map(str, action.default))})".replace("%", "%%")
        return super()._get_help_string(action)


def parser(doc: str | None, lesson: str, *, epochs: int | None, batch_size: int | None,
           lr: float, several_processes: bool = False) -> argparse.ArgumentParser:
    """The options every lesson takes; ``lesson`` names the default run folder ``runs/<lesson>/``.

    ``epochs`` or ``batch_size`` None: the lesson chooses it from the table (:mod:`wideann.defaults`).
    Wrong options are :class:`UsageError` s (exit code 2), reported in one line by :func:`run`; so is a
    launch of several processes (``WORLD_SIZE`` > 1) for a lesson that trains on one
    (``several_processes`` False)."""
    from .. import defaults

    first = (doc or "").strip().splitlines()[0] if doc else lesson
    p = _Parser(description=first, formatter_class=_HelpFormatter)
    p.several_processes = several_processes
    p.lesson = lesson
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
                   help=(defaults.help_text("batch_size") if batch_size is None
                         else "rows per training step (per process)"))
    p.add_argument("--lr", type=positive_float, default=lr, help="learning rate")
    p.add_argument("--seed", type=seed, default=0,
                   help="seed of the split, the shuffling and the initial weights")
    p.add_argument("--output-dir", type=folder, default=os.path.join("runs", lesson),
                   help="where the run writes its files")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars (they show only on a terminal)")
    return p


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
