"""How a lesson ends: a user's mistake as one line and an exit code, a bug with its traceback.

:func:`run` runs a lesson's ``main()``; :func:`user_error` tells the user's mistakes (:class:`LessonError`,
:class:`UsageError`, the engine's ``DataError``, file-system errors about the user's files) from bugs of
ours. Under several processes only the main one speaks, and every process ends without the
interpreter's teardown (see :func:`_exit`).
"""
from __future__ import annotations

import errno
import os
import re
import sys
import time
import traceback

from .._entry import escape_what_stdout_cannot_encode, printable
from ..interrupts import SPEAK_WAIT_S, end_with_the_launcher, ignored, stop_like_ctrl_c, the_run_takes_over


class LessonError(Exception):
    """A mistake in the user's data or files (not a bug of ours): reported as one line, exit code 1."""
    exit_code = 1


class UsageError(LessonError):
    """A wrong option or combination of options: reported as one line, exit code 2 (argparse's way)."""
    exit_code = 2



_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def is_main_rank() -> bool:
    """The process that speaks for all: global rank 0 (``RANK`` is set by torchrun / accelerate launch)."""
    return os.environ.get("RANK", "0") == "0"


def _program() -> str:
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "lesson"


def user_error(e: BaseException) -> tuple[int, str] | None:
    """``(exit code, one line)`` when ``e`` is the user's mistake rather than a bug of ours, else None.

    The user's: :class:`LessonError` / :class:`UsageError`, the engine's ``DataError`` (its line names
    file, line and column), a table too small to split, rows forced into a resident tier they do not fit, and
    file-system errors about the user's files or disk (an ``OSError`` that names a file, or a full disk, a
    read-only file system, no permission).
    A missing file is not among them: the lessons check the files the user names, so a file missing
    later is a bug of ours (or a file deleted under a running lesson) and keeps its traceback.
    """
    from ..data import TierDoesNotFit, TooFewRows
    from ..engine import DataError

    if isinstance(e, LessonError):
        return e.exit_code, one_line(str(e))
    if isinstance(e, (DataError, TooFewRows, TierDoesNotFit)):
        return 1, ours(e)
    if isinstance(e, OSError) and e.errno != errno.ENOENT and (e.filename is not None or e.errno in _USER_ERRNOS):
        what = one_line(e.strerror or str(e))
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            what += ": free some space and run again (with --resume if the run has saved a checkpoint)"
        return 1, f"{shown(e.filename)}: {what}" if e.filename is not None else what
    return None


_LINE_BREAK = re.compile(r"\s*[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]\s*")
"""A line break (any that ``str.splitlines`` breaks at) and the blanks around it."""


def one_line(msg: str) -> str:
    """``msg`` on one line: a library's message of several lines (a ``torch.load`` error) flattened, each line
    break with the blanks around it one space (none at either end). Other spaces stay as they are: the file names
    in a lesson's messages are :func:`shown` (no line break in them), and a name with two spaces said with one
    named another file. What else is not printable is then shown as the command line shows the same message
    (:func:`~wideann._entry.printable`): a tab left inside a line (one that follows a line break, a message's
    indent, went with it) as ``\\x09``, not a space, since it may be part of a name the library quotes; an escape
    character as ``\\x1b``, not sent to the terminal; a byte that is not UTF-8 as ``\\xNN``."""
    return printable(_LINE_BREAK.sub(lambda m: "" if m.start() == 0 or m.end() == len(msg) else " ", msg))


def shown(path) -> str:
    """A file name (``str``, ``bytes``, ``Path``) as a lesson's error line shows it, as the command line shows it:
    a control character in it (a newline), any other character :meth:`str.isprintable` refuses (U+202E, U+200B) and
    a byte that is not UTF-8 escaped (:func:`~wideann._entry.printable`).
    A newline said as a space named another file, perhaps one that exists."""
    return printable(os.fsdecode(path))


def ours(e: BaseException) -> str:
    """The one line of an error in this package's words (the engine's ``DataError``, a ``ValueError`` of
    :mod:`wideann.data` or :class:`~wideann.Stats`): one line as written, but for the file names in it, whose
    control characters are escaped here, as the command line shows the same error (:func:`shown`)."""
    return printable(str(e))


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
    escape_what_stdout_cannot_encode()  # a path or column name the locale cannot spell: escaped, not a traceback
    from .processes import pause
    from .runlock import lessons_lock_their_run_folder, remove_what_a_refused_run_made

    lessons_lock_their_run_folder(True)  # one run at a time in a run folder, to the end of this one
    try:
        # kill, a scheduler's time limit, a closed terminal: cleaned up as after Ctrl-C (set first: between the two, a
        # SIGTERM put back to its default ended the run silently)
        stop_like_ctrl_c()
        pause("taking-over")
        the_run_takes_over()  # until here an interrupt ended the lesson at once (interrupts.at_the_top_of_a_lesson)
        end_with_the_launcher()  # and the end of accelerate launch (or torchrun), by kill or timeout
        main()
    except KeyboardInterrupt:
        if is_main_rank():
            with ignored():  # (a second Ctrl-C, as users press it, would cut the line with a traceback)
                pause("interrupted")
                print(_interrupted(), file=sys.stderr, flush=True)
        _exit(130)
    except Exception as e:  # noqa: BLE001 - sorted below; bugs are raised again
        found = user_error(e)
        if found is None:
            if not is_main_rank() and _from_a_peer(e):
                _exit(1)
            raise
        code, line = found
        if is_main_rank():
            # the run ends here, with its line and its code: a Ctrl-C or SIGTERM meanwhile would only turn the line
            # and the cleanup into a KeyboardInterrupt traceback, half done
            with ignored():
                pause("refused")
                print(f"{_program()}: error: {line}", file=sys.stderr, flush=True)
                _release()  # (the lock files first: they are in the folders the refused run made)
                remove_what_a_refused_run_made()
        else:
            _let_the_main_process_speak()
        _exit(code)
    finally:
        _release()
    if _distributed():  # finished: everything is written and closed
        _exit(0)


_on_interrupt: list = []
"""Callables that say, after a Ctrl-C, how to go on (``None`` when they have nothing to say): a run with
checkpoints (:class:`~wideann.course.Checkpoints`) registers one that names ``--resume``."""


def say_on_interrupt(hint) -> None:
    """Register ``hint()``, a line's continuation (``"; ..."``) or None, said after ``<lesson>: interrupted``
    (in place of the one registered before: a lesson has one run)."""
    _on_interrupt[:] = [hint]


def _interrupted() -> str:
    line = f"{_program()}: interrupted"
    for hint in _on_interrupt:
        try:
            said = hint()
        except Exception:  # noqa: BLE001 - a hint must never turn Ctrl-C into a traceback
            said = None
        if said:
            line += said
    return line


def _let_the_main_process_speak() -> None:
    """After an error that the main process reports (it fails at the same point: see :func:`run`), the
    others wait for it to print its line and end -- at most :data:`~wideann.interrupts.SPEAK_WAIT_S` -- before
    they end. The launcher (``accelerate launch``, torchrun) ends every process as soon as one of them has failed:
    a process that ended first could have the main one killed before it had said why."""
    if _distributed():
        try:
            time.sleep(SPEAK_WAIT_S)
        except KeyboardInterrupt:  # the launcher ends the others (SIGTERM) once the main process has failed
            pass


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
    _release()
    if _distributed():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _release() -> None:
    """The run folder's lock goes as the run ends (``os._exit`` skips ``atexit``, and so does a forking caller)."""
    from .runlock import lessons_lock_their_run_folder, release_run_folders

    release_run_folders()
    lessons_lock_their_run_folder(False)
