"""One run at a time in a run folder (:func:`hold_the_run_folder`).

Two lessons writing the same ``--output-dir`` at once (a job submitted twice, a requeued job started while the
first still runs, a ``--resume`` of a run that had not died) removed each other's half-written checkpoints (one
ended in a traceback), and could leave one run's ``best_model.pt`` beside the other's ``metrics.json`` and
``predictions.csv``: a mix, said by no one. So the main process holds an exclusive ``flock`` on
``OUTPUT_DIR/.wideann-run.lock`` for the whole run; a second run there is refused in one line before any work.

The lock goes with the process, however it ends (a kill, a preemption): the file a killed run leaves behind
locks nothing, and the next run takes it over (one of another user too, in a folder shared with them: opened
to be read where it may not be written). A run that ends removes it. Only a lesson run by ``course.run``
locks (a test or a notebook calling ``prepare_data`` would hold the folder until its process ends). On a file
system without ``flock`` the run goes ahead unlocked (as :func:`wideann._atomic.folders_locked` does).

Held, the folder's leftovers are the run's to remove: what killed writes left there goes before any work of its own
(:func:`remove_what_killed_writes_left`); unlocked, or refused, a run removes none (another run may be writing them).
"""
from __future__ import annotations

import atexit
import errno
import fcntl
import os
import re
import shutil
import socket
import stat
from pathlib import Path

from .._atomic import TEMP_NAME
from .errors import LessonError, shown

LOCK_NAME = ".wideann-run.lock"

_held: dict = {}  # real path of a run folder -> (fd of its lock file, the lock file's path)
_made: list = []  # the folders the run made, in the order it made them: see make_folder
_started = False  # whether the run has begun its work: see the_run_has_started
_in_a_lesson = False  # set by course.run for the lesson it runs: a caller of prepare_data (a test, a notebook)
#                       outside of one takes no lock, which it would hold until its process ends


def lessons_lock_their_run_folder(on: bool) -> None:
    """Whether :func:`hold_the_run_folder` locks (``course.run`` turns it on for the lesson it runs, and with it
    starts afresh the record of what the run made: :func:`make_folder`)."""
    global _in_a_lesson, _started
    _in_a_lesson = on
    if on:
        _made.clear()
        _started = False


def hold_the_run_folder(out_dir, what: str | None = None) -> bool:
    """Lock ``out_dir`` for this process until it ends (or :func:`release_run_folders`); :class:`LessonError`
    when another process holds it. Call it on the main process only: it alone writes the run's files. Outside of
    a lesson run by ``course.run``, nothing is locked. ``what``: what the folder is to the run, when it is not its
    run folder (the folder of its TensorBoard curves, say), for the line that refuses it. Returns whether this call
    locked it (not: held already, outside of a lesson, or a file system without ``flock``): then, and only then,
    what killed writes left there is this run's to remove (:func:`remove_what_killed_writes_left`)."""
    key = os.path.realpath(out_dir)
    if key in _held or not _in_a_lesson:
        return False
    path = Path(out_dir) / LOCK_NAME
    while True:
        fd, writable = _open_in(out_dir, path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                mine = f" ({what} of this run)" if what else ""
                raise LessonError(f"{shown(out_dir)}: another run is writing in this folder{mine} "
                                  f"({holder or 'a process'} holds {LOCK_NAME}): two runs in one folder would remove "
                                  "each other's checkpoints and mix their models, results and curves; wait for it to "
                                  "end (or end it), or give another --output-dir") from None
            if not writable and e.errno == errno.EBADF:  # (NFS locks a file opened to be read for sharing only)
                raise LessonError(f"{shown(path)}: the lock file of another user's run ({holder or 'a process'}), "
                                  "which this file system cannot lock without writing it: if that run has ended, "
                                  "remove the file; else wait for it to end, or give another --output-dir") from None
            return False  # no flock here (ENOLCK, EINVAL...): unlocked
        try:  # the file locked is still the one at the path: a run that ended meanwhile removes its lock file
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same and not writable:  # a killed run of another user left it: locked by no one, not ours to write in;
            try:  # replaced by one of our own (the folder is ours to write in), else held as it is
                os.unlink(path)
            except OSError:
                break
            same = False
        if same:
            break
        os.close(fd)
    if writable:
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode())
    _held[key] = (fd, path)
    if len(_held) == 1:
        atexit.register(release_run_folders)
    return True


def _open_in(out_dir, path: Path) -> tuple[int, bool]:
    """:func:`_open`, with the folder made again when it went since the run made it (a run refused there removes
    the folders it made and left empty, at any moment: between this run's :func:`make_folder` and the open, the
    open found no folder, and this run ended in a traceback). Made by :func:`make_folder`, it is this run's."""
    for _ in range(4):
        try:
            return _open(path)
        except FileNotFoundError:
            make_folder(out_dir)
    return _open(path)


def _open(path: Path) -> tuple[int, bool]:
    """The lock file, opened to be written, or only read when it may not be written (a run of another user, in a
    folder shared with it, made it): ``flock`` takes either, and a run of theirs that is alive is then said as
    such, not as "permission denied"; one that was killed is taken over. Returns ``(fd, writable)``."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644), True
    except PermissionError:
        if not os.path.isfile(path):
            raise
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC), False


def release_run_folders() -> None:
    """Remove the lock files this process holds, then let go of them (in that order: a run that opens the file
    just before it goes finds, once it has the lock, that it is no longer the one at the path)."""
    while _held:
        _key, (fd, path) = _held.popitem()
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)


def make_folder(folder) -> None:
    """``mkdir -p folder``, remembering the folders it made, so that a run refused before it has begun its work
    leaves none of them empty (:func:`remove_what_a_refused_run_made`)."""
    folder = Path(folder)
    # Each folder of the path made in turn, the outermost first, and recorded only when this mkdir made it: a path
    # tested for before (`new/../old`: no `new`, so no `new/../old` either, until `new` is made), or a folder that a
    # run started beside this one made meanwhile, was taken for one made here, and removed (old, empty) on a refusal
    for attempt in range(5):  # (a parent that another refused run removes meanwhile is made again)
        try:
            for p in [*reversed(folder.parents), folder]:
                try:
                    os.mkdir(p)
                except FileNotFoundError:
                    raise
                except OSError:  # (there already, as Path.mkdir(exist_ok=True) takes it)
                    if not p.is_dir():
                        raise
                    continue
                _made.append(p)
            return
        except FileNotFoundError:
            if attempt == 4:
                raise


def the_run_has_started() -> None:
    """From here the run's folders hold its work (checkpoints, curves, a model, results): a failure leaves them,
    and the user may go on from them (``--resume``). Called as a run starts training (a new run clears the
    earlier results, :func:`~wideann.course.results.clear_results`; a resumed run has loaded its checkpoint) and
    whenever it saves something."""
    global _started
    _started = True


def remove_what_a_refused_run_made() -> list[Path]:
    """After a run was refused (options, data, ``--resume``) before it began its work, the folders it made and
    left empty go: the run folder, its parents that it made, the folder of its curves. A table it normalized into
    ``data/`` stays, and with it the folders that hold it: it is complete, and the next run, the mistake mended,
    uses it instead of normalizing again (51 GB, minutes, at the reference scale). A folder that was there before
    is never removed; call it once the run folders are released (their lock files removed). Returns the folders
    removed."""
    made, removed = list(_made), []
    _made.clear()
    if _started:
        return removed
    for folder in reversed(made):  # (the innermost first)
        try:
            folder.rmdir()  # (only when empty)
        except OSError:
            continue
        removed.append(folder)
    return removed


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""


SAVE_TEMPORARY = re.compile(r"^\.(step_[0-9]+\.tmp|trash\.step_[0-9]+\.[0-9]+)\Z")
"""The names of what a checkpoint save that was killed leaves in the checkpoints folder: ``.step_N.tmp``, the folder it
writes before the rename to ``step_N`` (:meth:`~wideann.course.Checkpoints.save`), and ``.trash.step_N.PID``, a
checkpoint on its way out. Never a complete checkpoint (``step_N``), nor anything else (N is ASCII digits: ``\\d``
took a user's ``.step_\\u0661.tmp`` too)."""


def remove_temporaries(folders, saves: bool = False, ours=TEMP_NAME) -> list[tuple[Path, int]]:
    """Remove what killed writes left in ``folders`` (a folder not there is skipped): the temporary files of
    outputs written under a temporary name (:data:`~wideann._atomic.TEMP_NAME`: ``best_model.pt``, ``metrics.json``,
    a normalized table...), plain files only, never a link; and with ``saves`` (the checkpoints folder) what killed
    checkpoint saves left (:data:`SAVE_TEMPORARY`). ``ours``: the temporary names that are the run's there, when not
    every one the folder holds is (:func:`remove_what_killed_writes_left`). Call it on the main process, with the run
    folder locked: a run still writing them holds it. Returns the temporary files removed, each with the bytes it
    freed (a hard link to a live file, a commit's kept copy, frees none). One that may not be removed (another
    user's, in a folder shared with them) stays: a refusal for want of space names it."""
    removed = []
    for folder in map(Path, folders):
        for p in sorted(folder.iterdir()) if folder.is_dir() else []:
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            if saves and SAVE_TEMPORARY.match(p.name):
                shutil.rmtree(p) if stat.S_ISDIR(st.st_mode) else p.unlink()
            elif TEMP_NAME.match(p.name) and ours.match(p.name) and stat.S_ISREG(st.st_mode):
                try:
                    p.unlink()
                except (FileNotFoundError, PermissionError):
                    continue
                removed.append((p, st.st_size if st.st_nlink == 1 else 0))
    return removed


_TABLE_TEMPORARY = re.compile(r"^\..+\.(npy|stats\.json)\.[A-Za-z0-9_]{6,8}\.tmp\Z", re.DOTALL)
"""The temporary names of what a lesson writes in ``data/`` and ``data/test/``: a normalized table ``NAME.npy`` and
its stats file ``NAME.stats.json`` (the engine's, :data:`~wideann._atomic.TEMP_NAME`)."""


def _temporaries_of(names) -> re.Pattern:
    """The temporary names (:data:`~wideann._atomic.TEMP_NAME`) of the files ``names``, and of nothing else."""
    return re.compile(r"^\.(%s)\.[A-Za-z0-9_]{6,8}\.tmp(\.npy)?\Z" % "|".join(map(re.escape, names)))


def remove_what_killed_writes_left(out_dir, results=()) -> list[tuple[Path, int]]:
    """As a run starts, once it has locked its run folder (:func:`hold_the_run_folder` returned True), before any
    work of its own there: the temporary files killed writes (``kill -9``, an OOM kill, a node failure) left in the
    run folder and in the folders of the tables it normalizes, ``data/`` and ``data/test/`` (:func:`remove_temporaries`;
    the checkpoints folder's go as :class:`~wideann.course.Checkpoints` starts a new run or loads one). A folder there
    that is a link is not followed. At the reference scale a normalized table's is 51 GB, and the next run normalized
    again beside it. Returns what was removed (:func:`remove_temporaries`).

    Only the temporaries of what a lesson writes there go: in the run folder those of ``results`` (the names of the
    files it writes there, :data:`~wideann.course.results.WRITTEN_AT_THE_END`), in ``data/`` and ``data/test/``
    those of tables and their stats files (:data:`_TABLE_TEMPORARY`). Any hidden ``.NAME.XXXXXX.tmp`` went: a file of
    the user's so named in an ``--output-dir .``, and the model another run was writing in its run folder
    ``a/data`` as this run of ``--output-dir a`` swept its ``data/`` (that run failed at its rename)."""
    folders = [Path(out_dir)]
    for sub in ("data", "test"):
        if (folders[-1] / sub).is_symlink():
            break
        folders.append(folders[-1] / sub)
    removed = remove_temporaries(folders[:1], ours=_temporaries_of(results)) if results else []
    return removed + remove_temporaries(folders[1:], ours=_TABLE_TEMPORARY)
