"""``python -m wideann.accelerate_config``: a default accelerate config for the lessons, unless there is one.

Without any accelerate config, ``accelerate launch scripts/1_first_ann.py`` first warns that it defaulted
``--num_processes``, ``--num_machines``, ``--mixed_precision`` and ``--dynamo_backend``. The README's install
step runs this module once, so that a newcomer's first launch runs clean, on a CPU and on a GPU alike.

It writes accelerate's default config file (``$HF_HOME/accelerate/default_config.yaml``, by default
``~/.cache/huggingface/accelerate/default_config.yaml``; ``--config_file`` for another place) with: one
process on one machine, full precision, and ``use_cpu: false`` — the script's ``Accelerator`` then takes
the GPU when there is one and the CPU otherwise. A config that already exists is never touched: a user's
own config (and any warning accelerate gives about it) stays exactly as it was.

Why not ``accelerate config default``: on a machine without a GPU it writes ``use_cpu: true``, and with
that ``accelerate launch`` warns on every run that it set ``--num_cpu_threads_per_process`` (unless
``OMP_NUM_THREADS`` is set); on a machine with several GPUs it writes one process per GPU, which starts
the single-process lessons 1-3 several times. Lesson 4 on several GPUs takes ``scripts/configs/4gpu.yaml``.

The folders of the default place are made as needed (``.cache/huggingface/accelerate``), under a home that
must exist: ``HOME`` (used when neither ``HF_HOME`` nor ``XDG_CACHE_HOME`` is set). A ``HOME`` that does not
exist (a typo, a service account's ``/nonexistent``) is refused in one line, and nothing is made:
``accelerate config`` would make it (as root, anywhere), and the config would land where no later launch of
the user looks. ``HF_HOME`` and ``XDG_CACHE_HOME`` name cache folders, which huggingface_hub and the XDG
convention make when missing (``export HF_HOME=/scratch/me/hf`` before its first use): made, as they are.
Any of the three that is a file is refused. The folders of a ``--config_file`` the user names are made as
needed.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys

from ._atomic import atomic_path


def default_path() -> str:
    """Where ``accelerate launch`` looks for its default config (honours ``HF_HOME``/``XDG_CACHE_HOME``)."""
    from accelerate.commands.config.config_args import default_config_file

    return default_config_file


def home() -> tuple[str, str]:
    """``(variable, folder)``: the home the default config lies under, as accelerate finds it (``HF_HOME``, else
    ``XDG_CACHE_HOME``, else ``HOME``, whose ``~`` is the account's home folder when ``HOME`` is unset)."""
    for var in ("HF_HOME", "XDG_CACHE_HOME"):
        if os.environ.get(var):
            return var, os.path.expanduser(os.environ[var])
    return "HOME", os.path.expanduser("~")


def refuse_a_home_that_does_not_exist() -> None:
    """An ``OSError`` naming the home folder of the default config when it is a file, or when it is ``HOME`` and
    does not exist: the config's folders are made under a home, not the home itself (a missing ``HF_HOME`` or
    ``XDG_CACHE_HOME``, a cache folder, is made, as huggingface_hub makes it)."""
    var, folder = home()
    if not os.path.isdir(folder) and (var == "HOME" or os.path.lexists(folder)):
        code, what = ((errno.ENOTDIR, "is not a folder") if os.path.lexists(folder)
                      else (errno.ENOENT, "does not exist"))
        raise OSError(code, f"the home folder ({var}) {what}: nothing written; set {var} to an existing folder "
                            "(or give --config_file)", folder)


def write(path: str | None = None) -> tuple[str, bool]:
    """Write the lessons' default config at ``path`` (default: accelerate's) unless a config is there;
    return the path and whether it was written."""
    from accelerate.commands.config.config_args import ClusterConfig, default_json_config_file, default_yaml_config_file

    path = os.path.abspath(path or default_path())
    existing = [path] if path != default_path() else [default_yaml_config_file, default_json_config_file]
    if any(os.path.isfile(p) for p in existing):
        return next(p for p in existing if os.path.isfile(p)), False
    if path == default_path():
        refuse_a_home_that_does_not_exist()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    config = ClusterConfig(compute_environment="LOCAL_MACHINE", distributed_type="NO", mixed_precision="no",
                           use_cpu=False, debug=False, num_processes=1, num_machines=1)
    with atomic_path(path) as tmp:
        config.to_yaml_file(tmp)
    return path, True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m wideann.accelerate_config", description=__doc__.splitlines()[0])
    p.add_argument("--config_file", "--config-file", help="where to write it (default: accelerate's default config)")
    args = p.parse_args(argv)
    try:
        path, written = write(args.config_file)
    except OSError as e:
        print(f"wideann: error: {e.filename or args.config_file}: {e.strerror or e}", file=sys.stderr)
        return 1
    if written:
        print(f"accelerate config: wrote {path} (one process; the GPU when there is one, else the CPU; full "
              "precision). `accelerate config` changes it.")
    else:
        print(f"accelerate config: keeping yours at {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
