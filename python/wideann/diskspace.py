"""Free-space checks before long work: refuse at the start, with one clear line, rather than fail
after an hour on a full disk.

Whoever is about to write a large output whose size is known in advance (pass 2 of ``normalize``, a
lesson's checkpoint, model or predictions) calls :func:`require_free` on the output's folder first.
The full-disk behaviour of the writers themselves (nothing left behind) stays: this check only moves
the failure to the start.
"""
from __future__ import annotations

import errno
import os
import shutil

__all__ = ["NotEnoughSpace", "require_free", "human_bytes"]


class NotEnoughSpace(OSError):
    """The output folder has less free space than the output needs (``errno.ENOSPC``)."""


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _existing_folder(path) -> str:
    """The folder ``path`` will be written in, or its nearest existing ancestor."""
    folder = os.path.join(os.getcwd(), os.fspath(path))  # (not abspath: lnk/.. is the folder above lnk's target)
    if not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder


def require_free(path, nbytes: int, what: str, mine=()) -> None:
    """Raise :class:`NotEnoughSpace` unless the folder of ``path`` (a file to be written, or a folder)
    has at least ``nbytes`` free. ``what`` names the output in the message, e.g. ``"the table t.npy"``.

    The message is one line: ``<folder>: not enough free space for <what>: needs <n>, <m> free``, and
    what the temporary files of killed runs take there, if any (``mine``: the caller's own, left out).
    """
    folder = _existing_folder(path)
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise NotEnoughSpace(errno.ENOSPC,
                             f"not enough free space for {what}: needs {human_bytes(nbytes)}, "
                             f"{human_bytes(free)} free{_leftovers(folder, mine)}", folder)


def _leftovers(folder: str, mine=()) -> str:
    """What the temporary files of killed runs (``kill -9``) in ``folder`` take, said after a refusal: they
    are hidden, and nothing else removes them (a run still writing one holds it: its owner decides), but a lesson
    run, those in its own run folder as it locks it (:func:`~wideann.course.runlock.remove_what_killed_writes_left`)."""
    from ._atomic import TEMP_NAME

    found, size, linked = [], 0, 0
    mine = {os.path.realpath(m) for m in mine}
    try:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if TEMP_NAME.match(entry.name) and os.path.realpath(entry.path) not in mine:
                found.append(entry.name)
                paths = [entry.path] if not entry.is_dir(follow_symlinks=False) else \
                    [os.path.join(root, f) for root, _, files in os.walk(entry.path) for f in files]
                for st in map(os.lstat, paths):
                    # A hard link (a commit's kept copy of a live file, left by a kill -9) shares its blocks:
                    # removing it frees nothing, so it is not counted in what removing them would free.
                    if st.st_nlink > 1:
                        linked += 1
                    else:
                        size += st.st_size
    except OSError:
        return ""
    if not found:
        return ""
    shared = f", not counting {linked} hard link(s) to other files" if linked else ""
    return (f"; {len(found)} temporary file(s) of interrupted runs take {human_bytes(size)} there{shared} "
            f"({found[0]}{', ...' if len(found) > 1 else ''}): remove them if no run is writing them")
