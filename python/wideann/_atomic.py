"""Write-to-temporary-then-rename, so that nothing is ever left at an output path after a failure."""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile


TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{6,8}\.tmp(\.npy)?$")
"""The names of the temporary files (and ``predict``'s folder) an output is written under before its rename:
:func:`temp_name`'s (``.NAME.`` 8 characters ``.tmp``, or ``.tmp.npy``) and the C++ engine's (6 characters).
Only a ``kill -9`` (or a crash of the machine) leaves one behind."""


def temp_name(path, suffix: str = ".tmp") -> str:
    """A fresh temporary name beside ``path`` (same folder, so that the final rename is atomic), hidden:
    ``.<name>.<8 random characters><suffix>``."""
    path = os.path.abspath(os.fspath(path))
    folder, base = os.path.split(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{path}: output folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=suffix, dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give what a plain open() would
    finally:
        os.close(fd)
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path; on success rename it to ``path``, on any failure remove it."""
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, os.fspath(path))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def folders_locked(paths):
    """Hold an exclusive lock (``flock``) on the folder of each path, in a fixed order (no deadlock
    between two holders). Commits that take it cannot interleave: two runs writing the same outputs
    rename them one pair after the other. Nothing is created: the lock is on the folder itself, and
    closing it releases it (also when the process dies). On a file system without ``flock`` the
    renames go ahead unlocked."""
    folders = sorted({os.path.dirname(os.path.abspath(os.fspath(p))) for p in paths})
    fds = []
    try:
        for folder in folders:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fds.append(fd)
            with contextlib.suppress(OSError):  # e.g. ENOLCK; a Ctrl-C while waiting still raises
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        for fd in fds:
            os.close(fd)


def commit_together(renames) -> None:
    """Rename each ``(temporary, final)`` pair into place, all under :func:`folders_locked`, so that
    outputs that belong together (a table and its stats file) are never mixed with another run's:
    two runs writing the same outputs end with one run's complete set. If a rename fails, the outputs
    already renamed are removed (nothing half-committed is left) and the error is raised."""
    renames = [(os.fspath(t), os.fspath(f)) for t, f in renames]
    with folders_locked([final for _tmp, final in renames]):
        done, current = [], None
        try:
            for tmp, final in renames:
                current = (tmp, final)  # before the rename: a Ctrl-C right after it must still find it
                os.replace(tmp, final)
                done.append(final)
                current = None
        except BaseException as e:
            # the rename under way when a Ctrl-C (not its own failure) came: done if its temporary is gone
            if current is not None and not isinstance(e, OSError) and not os.path.lexists(current[0]):
                done.append(current[1])
            for final in done:
                with contextlib.suppress(OSError):
                    os.unlink(final)
            raise
