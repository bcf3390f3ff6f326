"""Write-to-temporary-then-rename, so that nothing is ever left at an output path after a failure."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import stat

from . import interrupts


TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{6,8}\.tmp(\.npy)?\Z", re.DOTALL)
"""The names of the temporary files (and ``predict``'s folder) an output is written under before its rename:
:func:`temp_name`'s (``.NAME.`` 8 characters ``.tmp``, or ``.tmp.npy``) and the C++ engine's (6 characters).
Only a ``kill -9`` (or a crash of the machine) leaves one behind. NAME may hold any character, a newline too
(``re.DOTALL``: ``.`` alone stops at one, and the leftovers of ``a<newline>b.csv`` went unseen); ``\\Z``, not ``$``,
which also takes a name that ends in ``.tmp`` and a newline."""


_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"  # (as mkstemp's names: 8 of them, 37^8 names)


def folder_of(path) -> str:
    """The folder a file ``path`` is in, as the system finds it: ``lnk/../t.npy`` is in the folder above the one
    ``lnk`` points to, not beside ``lnk`` (``os.path.abspath`` drops ``lnk/..`` as text; a temporary made there
    would be renamed across folders, and across file systems not at all, after all the work)."""
    return os.path.dirname(os.path.join(os.getcwd(), os.fspath(path))) or "/"


def longest_name(folder) -> int:
    """The longest file name ``folder`` takes, in bytes (NAME_MAX: 255 on the usual file systems)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def refuse_a_name_too_long(path) -> None:
    """Raise ``OSError(ENAMETOOLONG)`` naming ``path`` when its file name is longer than its folder takes:
    before any work, not at the end (the final rename would fail)."""
    path = os.fspath(path)
    name = os.fsencode(os.path.basename(path))
    longest = longest_name(folder_of(path)) if os.path.isdir(folder_of(path)) else 255
    if len(name) > longest:
        raise OSError(errno.ENAMETOOLONG, f"file name too long ({len(name)} bytes; this folder takes {longest} at "
                                          "most)", path)


def on_a_read_only_file_system(path) -> bool:
    """Whether ``path`` (a file or a folder that is there) lies on a file system mounted read-only, where
    nothing may be written whatever the permissions (EROFS, the superuser's writes too)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, ValueError, AttributeError):
        return False


def why_not_writable(path) -> tuple[int, str]:
    """Why ``path``, which ``os.access`` says may not be written, may not: ``(errno.EROFS, "read-only file
    system")`` on a read-only mount (no permission helps there), else ``(errno.EACCES, "permission denied")``,
    for an ``OSError`` naming it."""
    if on_a_read_only_file_system(path):
        return errno.EROFS, "read-only file system"
    return errno.EACCES, "permission denied"


def refuse_a_write_protected_file(path) -> None:
    """Raise ``PermissionError`` naming ``path`` when a file is there that may not be written: a plain ``open()``
    refuses to write it, and renamed over, its write protection would be lost without a word. On a read-only
    file system (which refuses the rename too) ``OSError`` EROFS, saying so. (Nothing there, a link -- replaced,
    not written through -- or a file that may be written: nothing is raised. As for ``open()``, the superuser
    may write any file.)"""
    path = os.fspath(path)
    try:
        mode = os.lstat(path).st_mode
    except (OSError, ValueError):
        return
    if stat.S_ISREG(mode) and not os.access(path, os.W_OK):
        if on_a_read_only_file_system(path):
            raise OSError(errno.EROFS, "cannot replace it: it is on a read-only file system", path)
        raise PermissionError(errno.EACCES, "cannot replace it: it is write-protected (make it writable, or remove "
                                            "it)", path)


def take_the_mode_of(final, tmp) -> None:
    """Where a file is at ``final``, give ``tmp`` (which will be renamed over it) its mode, its POSIX access ACL and,
    where allowed, its owner and group: as a plain ``open()`` that truncates a file keeps them, a private (0600)
    output rewritten stays private. A new output keeps the mode it was made with (0666 less the umask)."""
    try:
        st = os.lstat(final)
    except (OSError, ValueError):
        return
    if not stat.S_ISREG(st.st_mode):
        return
    with contextlib.suppress(OSError):
        if os.lstat(tmp).st_nlink > 1:  # a hard link to another file (--resume puts a checkpoint's copy back so):
            return  # its mode, owner and ACL are that file's, which must not change; it comes back as it was kept
    try:  # the owner too where allowed (the superuser), as sed -i does: root rewriting a user's private file
        os.chown(tmp, st.st_uid, st.st_gid)  # must not take it from the user (root:group 0600 locks its owner out)
    except OSError:
        with contextlib.suppress(OSError):  # (a group the user is not in: the folder's, as for a new file)
            os.chown(tmp, -1, st.st_gid)
    with contextlib.suppress(FileNotFoundError):  # (a temporary gone: the rename says so, naming the output)
        os.chmod(tmp, stat.S_IMODE(st.st_mode) & 0o777)
    # A POSIX access ACL too (user:1234:rw- beside group::---): the mode's group bits of a file with one are its
    # mask, so the mode alone gave the owning group the mask's rights and took the named users' away.
    with contextlib.suppress(OSError, AttributeError):  # (none, or no ACLs here: nothing to copy)
        os.setxattr(tmp, _ACL, os.getxattr(final, _ACL, follow_symlinks=False), follow_symlinks=False)


_ACL = "system.posix_acl_access"


_TEMP_EXTRA = len(b"..") + 8  # the dots around the name, and the 8 random characters (then the suffix)


def temp_name(path, listed: list, suffix: str = ".tmp", folder: bool = False, make=None) -> str:
    """A fresh temporary file (empty; a folder with ``folder``; or what ``make(name)`` makes, raising
    ``FileExistsError`` where the name is taken) beside ``path`` (same folder, so that the final rename is
    atomic), hidden: ``.<name>.<8 random characters><suffix>``, the name cut to fit the folder's longest
    name (an output name of 250 bytes is fine); its name.

    The name is appended to ``listed`` *before* the file is made, so that a cleanup removing
    every listed name (:func:`remove_listed`) also removes a file whose making a Ctrl-C cut short: Python
    raises KeyboardInterrupt where a call returns, so a name returned to the caller may never reach its
    variable, and a file made a moment earlier would be left behind. (A listed name may not have been made;
    it is another run's file only if that run drew the same 8 characters, one chance in 10^12, and the
    Ctrl-C came in the microseconds between.)"""
    path = os.fspath(path)
    where, base = folder_of(path), os.path.basename(path)
    if not os.path.isdir(where):
        raise FileNotFoundError(f"{path}: output folder {where} does not exist")
    refuse_a_name_too_long(path)
    keep = max(1, longest_name(where) - _TEMP_EXTRA - len(os.fsencode(suffix)))
    name = os.fsencode(base)
    if len(name) > keep:  # cut at a UTF-8 character boundary
        while keep > 1 and name[keep] & 0xC0 == 0x80:
            keep -= 1
        base = os.fsdecode(name[:keep])
    for _ in range(100):
        tmp = os.path.join(where, f".{base}.{''.join(secrets.choice(_LETTERS) for _ in range(8))}{suffix}")
        listed.append(tmp)
        try:
            if make is not None:
                make(tmp)
            elif folder:
                os.mkdir(tmp, 0o700)
            else:  # (0o666: the umask applies, as to a plain open())
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
            return tmp
        except FileExistsError:
            listed.remove(tmp)
        except OSError as e:  # (no inode left, a quota, a folder gone or in /proc): named by the output, not by
            if make is not None:  # its hidden temporary, as the engine names it ("cannot create output")
                raise
            raise type(e)(e.errno, f"cannot create output: {e.strerror or e}", path) from None
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
    """Yield a temporary path; on success rename it to ``path`` (with :func:`commit_together`: what was at
    ``path`` is kept until the rename is done, and the path is recorded in :data:`WRITTEN`), on any failure
    remove it."""
    refuse_what_is_not_a_file(path)
    made: list = []
    try:
        tmp = temp_name(path, made)
        yield tmp
        commit_together([(tmp, path)])
    except BaseException:
        remove_listed(made)  # (a temporary renamed into place is not there any more: the output stays)
        raise


@contextlib.contextmanager
def folders_locked(paths):
    """Hold an exclusive lock (``flock``) on the folder of each path, in a fixed order (no deadlock
    between two holders). Commits that take it cannot interleave: two runs writing the same outputs
    rename them one pair after the other. The engine's own commit (``OutputFile::commit`` in C++: make-data,
    denormalize) takes the same lock on its folder. Nothing is created: the lock is on the folder itself, and
    closing it releases it (also when the process dies). On a file system without ``flock`` the
    renames go ahead unlocked."""
    fds, seen = [], set()
    try:
        for folder in sorted({folder_of(p) for p in paths}):
            try:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:  # a folder that may be written but not read (mode -wx): unlocked, as without flock
                continue
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) in seen:  # one folder by two names (a link): locked once, or flock on the
                os.close(fd)                    # second descriptor would wait for the first forever
                continue
            seen.add((st.st_dev, st.st_ino))
            fds.append((st.st_dev, st.st_ino, fd))
        for _dev, _ino, fd in sorted(fds):  # in a fixed order whatever the names: no deadlock between two holders
            with contextlib.suppress(OSError):  # e.g. ENOLCK; a Ctrl-C while waiting still raises
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        for _dev, _ino, fd in fds:
            os.close(fd)


def commit_together(renames, more=None) -> None:
    """Rename each ``(temporary, final)`` pair into place, all under :func:`folders_locked`, so that
    outputs that belong together (a table and its stats file) are never mixed with another run's:
    two runs writing the same outputs end with one run's complete set.

    Nothing that was there is lost: where several outputs are committed, each final file that exists is
    first kept under a hidden name (a hard link, :func:`_keep`), so that if a rename fails every final
    path is given back what it held before (a path that held nothing is removed) and the error is raised;
    a single output needs none (a rename that fails leaves what was there). Ctrl-C, SIGTERM and SIGHUP are
    held back from the first rename until the commit is done or undone, then delivered
    (:func:`~wideann.interrupts.deferred`). On success the kept names are removed and the finals are
    recorded in :data:`WRITTEN`. A final path that is a folder or anything but a file (a device, a FIFO,
    or a link to one) is refused before anything is renamed (:class:`NotAFileError`). A symbolic link to
    a file, or to nothing, at a final path is replaced by the file, not written through (as every
    write-then-rename writer does). ``more``: called under the lock, before any rename, for more pairs in the
    same folders (outputs that depend on what is there then, which another run may have changed)."""
    renames = [(os.fspath(t), os.fspath(f)) for t, f in renames]
    with folders_locked([final for _tmp, final in renames]):
        if more is not None:
            renames += [(os.fspath(t), os.fspath(f)) for t, f in more()]
        for tmp, final in renames:
            refuse_what_is_not_a_file(final)
            refuse_a_write_protected_file(final)
            take_the_mode_of(final, tmp)
        with interrupts.deferred():
            kept: list = []  # (hidden name, final) of each final that was there, listed before it is made
            done, current = [], None
            try:
                for tmp, final in renames:
                    if len(renames) > 1 and os.path.lexists(final):
                        _keep(final, kept)
                    current = (tmp, final)
                    try:
                        os.replace(tmp, final)
                    except OSError as e:  # named by the output, not by its hidden temporary
                        raise type(e)(e.errno, _why_not_renamed(e, tmp), final) from None
                    done.append(final)
                    current = None
            except BaseException as e:
                # (not a signal, held back: an error raised as a rename returned, its temporary gone: done)
                if current is not None and not isinstance(e, OSError) and not os.path.lexists(current[0]):
                    done.append(current[1])
                for final in done + [final for _k, final in kept if final not in done]:
                    with contextlib.suppress(OSError):
                        _give_back(final, kept, done)
                raise
            WRITTEN.extend(final for _tmp, final in renames)
            for k, _final in kept:
                _unlink(k)


WRITTEN: list = []
"""Every final path :func:`commit_together` renamed into place in this process, in order. A command
interrupted after its output was committed tells by it that the output is complete (``cli.main``)."""


class NotAFileError(ValueError):
    """An output path where a folder, a device, a FIFO or a socket is: an output is written under a temporary
    name and renamed over its path, which would replace that (or fail, after all the work)."""


def what_is_not_a_file(path) -> str | None:
    """What is at ``path`` when it is not a regular file (one line naming it, for an error): a folder, a
    device, a FIFO, a socket, or a symbolic link to one of them (``/dev/stdout``: the rename would replace
    the link); None when nothing is there, a file, or a link to a file or to nothing (which the rename
    replaces)."""
    path = os.fspath(path)
    try:
        mode = os.lstat(path).st_mode
        link = stat.S_ISLNK(mode)
        # /dev/stdout, /dev/stderr: links to /proc/self/fd/N; /dev/fd/N, /proc/self/fd/N: links in a /proc folder
        # (to the file stdout is, say: the rename into /proc fails after all the work)
        if link and (os.readlink(path).startswith("/proc/")
                     or os.path.realpath(folder_of(path)).startswith("/proc/")):
            return (f"{path}: is a stream of this process, not a file: outputs are written under a temporary name "
                    "and renamed over their path; give the path of a file")
        if link:
            mode = os.stat(path).st_mode
    except (OSError, ValueError):  # nothing there, a link to nothing (or no folder: said elsewhere)
        return None
    if stat.S_ISREG(mode):
        return None
    what = f"a link to {_kind(mode)}" if link else _kind(mode)
    return (f"{path}: is {what}, not a file: outputs are written under a temporary name and "
            "renamed over their path; give the path of a file")


def _kind(mode: int) -> str:
    return ("a folder" if stat.S_ISDIR(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a file" if stat.S_ISREG(mode) else "not a regular file")


def kind_of(path) -> str:
    """What is at ``path`` (links followed), in words: "a folder", "a device", "a FIFO (named pipe)", ..."""
    return _kind(os.stat(os.fspath(path)).st_mode)


def output_over_an_input(outputs, inputs) -> str | None:
    """What is wrong when one of ``outputs`` is one of ``inputs`` (the same file, by any name): writing it
    would destroy that input; None when none is."""
    for out in filter(None, outputs):
        for inp in filter(None, inputs):
            try:
                same = os.path.samefile(out, inp)
            except OSError:  # one of them is not there (yet)
                continue
            if same:
                also = "" if os.path.abspath(out) == os.path.abspath(inp) else f" ({os.fspath(inp)})"
                return (f"{os.fspath(out)}: is also an input of this command{also}: writing it would destroy that "
                        "input; give another output")
    return None


def refuse_what_is_not_a_file(path) -> None:
    """Raise :class:`NotAFileError` when ``path`` is a folder or anything but a file (:func:`what_is_not_a_file`)."""
    wrong = what_is_not_a_file(path)
    if wrong:
        raise NotAFileError(wrong)


def _why_not_renamed(e: OSError, tmp: str) -> str:
    why = e.strerror or str(e)
    if isinstance(e, FileNotFoundError) and not os.path.lexists(tmp):
        why += f" (its temporary {os.path.basename(tmp)} is gone: removed by another process?)"
    return why


def _keep(final: str, kept: list) -> None:
    """Keep the file at ``final`` under a fresh hidden name beside it (:func:`temp_name`'s, so that a ``kill -9``
    leaves one that is cleaned up as temporaries are): a hard link, so that ``final`` stays in place for readers
    until the rename; where the file system has no hard links, the file is moved aside. ``(name, final)`` is
    appended to ``kept`` (nothing when the file is gone meanwhile). (No Ctrl-C lands between the making and
    the listing: :func:`commit_together` holds signals back.)"""
    names: list = []
    try:
        keep = temp_name(final, names, make=lambda name: os.link(final, name, follow_symlinks=False))
    except FileNotFoundError:  # (removed since it was seen: nothing to keep)
        return
    except FileExistsError:  # (no free name: temp_name says so)
        raise
    except OSError:  # no hard links here (EPERM, ENOTSUP on some network and FUSE file systems)
        keep = names[-1]
        os.rename(final, keep)
    kept.append((keep, final))


def _give_back(final: str, kept: list, done: list) -> None:
    """Undo: ``final`` gets back the file kept for it (if it was renamed over, or moved aside), or is removed
    (if this commit put it there and nothing was there before); a kept link of a final not renamed over is
    removed. Safe to run twice (a Ctrl-C may repeat it)."""
    keep = next((k for k, f in kept if f == final), None)
    if keep is None:
        if final in done:
            _unlink(final)
    elif final in done or not os.path.lexists(final):
        with contextlib.suppress(FileNotFoundError):  # (already given back)
            os.replace(keep, final)
    else:
        _unlink(keep)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
