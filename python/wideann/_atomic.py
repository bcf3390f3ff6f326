"""Write-to-temporary-then-rename, so that nothing is ever left at an output path after a failure."""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil


TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{6,8}\.tmp(\.npy)?$")
"""The names of the temporary files (and ``predict``'s folder) an output is written under before its rename:
:func:`temp_name`'s (``.NAME.`` 8 characters ``.tmp``, or ``.tmp.npy``) and the C++ engine's (6 characters).
Only a ``kill -9`` (or a crash of the machine) leaves one behind."""


_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"  # (as mkstemp's names: 8 of them, 37^8 names)


def temp_name(path, listed: list, suffix: str = ".tmp", folder: bool = False) -> str:
    """A fresh temporary file (empty; a folder with ``folder``) beside ``path`` (same folder, so that the final
    rename is atomic), hidden: ``.<name>.<8 random characters><suffix>``; its name.

    The name is appended to ``listed`` *before* the file is made, so that a cleanup removing
    every listed name (:func:`remove_listed`) also removes a file whose making a Ctrl-C cut short: Python
    raises KeyboardInterrupt where a call returns, so a name returned to the caller may never reach its
    variable, and a file made a moment earlier would be left behind. (A listed name may not have been made;
    it is another run's file only if that run drew the same 8 characters, one chance in 10^12, and the
    Ctrl-C came in the microseconds between.)"""
    path = os.path.abspath(os.fspath(path))
    where, base = os.path.split(path)
    if not os.path.isdir(where):
        raise FileNotFoundError(f"{path}: output folder {where} does not exist")
    for _ in range(100):
        tmp = os.path.join(where, f".{base}.{''.join(secrets.choice(_LETTERS) for _ in range(8))}{suffix}")
        listed.append(tmp)
        try:
            if folder:
                os.mkdir(tmp, 0o700)
            else:  # (0o666: the umask applies, as to a plain open())
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
            return tmp
        except FileExistsError:
            listed.remove(tmp)
    raise FileExistsError(f"{path}: no free temporary name beside it")


def remove_listed(listed: list) -> None:
    """Remove the temporary files (or folders) named in ``listed`` (see :func:`temp_name`); names not there are
    skipped. The list is emptied."""
    while listed:
        tmp = listed.pop()
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path; on success rename it to ``path``, on any failure remove it."""
    made: list = []
    try:
        tmp = temp_name(path, made)
        yield tmp
        os.replace(tmp, os.fspath(path))
    except BaseException:
        remove_listed(made)
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
