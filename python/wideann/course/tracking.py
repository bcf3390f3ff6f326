"""``--log-with`` / ``--log-every``: experiment tracking through accelerate's trackers. A tracker that is
unknown or not installed is a one-line usage error (exit code 2); :func:`tracker_kwargs` and
:func:`tracker_config` are what ``accelerator.init_trackers`` is given."""
from __future__ import annotations

import argparse

from .options import positive_int


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
    TensorBoard drops what an earlier run in the same folder logged from that step on. So a run resumed from
    the checkpoint of step S (first step S + 1) continues its curves without the interrupted run's tail (a
    new run, step 1, finds none: the lessons remove an earlier run's curves with its results as a new run
    starts, :func:`~wideann.course.results.clear_results`)."""
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
