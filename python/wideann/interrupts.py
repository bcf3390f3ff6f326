"""Termination signals handled like Ctrl-C, so that the cleanup of an interrupt runs for them too.

``kill``, a batch scheduler's time limit (SIGTERM) or a closed terminal or dropped ssh session (SIGHUP)
would otherwise end the process at once, leaving the temporary files of its outputs (as large as a
table) behind. With :func:`stop_like_ctrl_c` they raise ``KeyboardInterrupt`` in the main thread: the
C++ engine is cancelled, temporary files are removed, and the command or lesson ends with exit code 130.
A signal that is ignored when the process starts (``nohup`` ignores SIGHUP) stays ignored.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

SIGNALS = ("SIGTERM", "SIGHUP")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def stop_like_ctrl_c() -> None:
    """SIGTERM and SIGHUP raise ``KeyboardInterrupt`` (in the main thread only; elsewhere, nothing changes). One
    that :func:`at_the_top_of_a_lesson` took from the default is replaced here in one step, before
    :func:`the_run_takes_over`: put back to the default first, it ended the run silently until this call."""
    if threading.current_thread() is not threading.main_thread():
        return
    for name in SIGNALS:
        sig = getattr(signal, name, None)
        now = signal.getsignal(sig) if sig is not None else None
        if now is signal.SIG_DFL or (now is _before_the_run and _BEFORE_THE_RUN.get(sig) is signal.SIG_DFL):
            signal.signal(sig, _interrupt)


LAUNCHER_MODULES = ("accelerate.commands.launch", "accelerate.commands.accelerate_cli", "torch.distributed.run")


def is_a_launcher(argv: list[str]) -> bool:
    """Whether a command line is ``accelerate launch`` or ``torchrun`` (as a script, or ``python -m``)."""
    if argv and os.path.basename(argv[0]).startswith("python"):
        argv = argv[1:]  # the launcher's script, or -m and its module
        if argv[:1] == ["-m"]:
            return argv[1:2] != [] and argv[1] in LAUNCHER_MODULES
    if not argv:
        return False
    name = os.path.basename(argv[0])
    return name in ("torchrun", "accelerate-launch") or (name == "accelerate" and argv[1:2] == ["launch"])


def end_with_the_launcher() -> bool:
    """A process started by ``accelerate launch`` or torchrun gets SIGTERM when its launcher ends (Linux's
    ``PR_SET_PDEATHSIG``), and so stops as after Ctrl-C: ``kill`` or ``timeout`` of the launcher alone would
    otherwise leave the lesson running, unseen, still writing into its run folder (accelerate's launcher of
    one process does not pass SIGTERM on). Returns whether it was set: not on other systems, not under
    another parent (a shell, ``nohup``: ending it does not end the run)."""
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/cmdline", "rb") as f:
            argv = [os.fsdecode(a) for a in f.read().split(b"\0") if a]
    except OSError:
        return False
    # the launcher's workers carry its variables: a process merely started from a folder or script of that name
    # does not (and ACCELERATE_USE_CPU alone may be the user's own)
    if not is_a_launcher(argv) or not ("TORCHELASTIC_RUN_ID" in os.environ or "ACCELERATE_USE_CPU" in os.environ):
        return False
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the launcher ended before the request: end now, as it would have made us
        os.kill(os.getpid(), signal.SIGTERM)
    return True


SPEAK_WAIT_S = 10.0
"""How long a process of a launched run waits, after an error that another process reports, for that one to say it
and end, before it ends itself: the launcher ends every process as soon as one has failed, and one that ended first
could have the speaking one killed before it had said why. ``course.run``'s processes wait for the main one
(:mod:`wideann.course.errors`); where the engine is refused, for the first process of their machine
(:mod:`wideann._native_checked`, which runs before the engine is trusted: it may import this module, which imports
nothing of the package, nor torch)."""


INTERRUPTS = ("SIGINT",) + SIGNALS


@contextlib.contextmanager
def deferred():
    """Ctrl-C, SIGTERM and SIGHUP held back for the block (a few renames that must all be done, or all undone,
    together) and delivered as it ends, as they would have been (``KeyboardInterrupt``, or the signal's own
    effect). In the main thread only: elsewhere (where Python cannot set handlers) they are not held back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list = []
    before = {}
    try:
        for name in INTERRUPTS:
            sig = getattr(signal, name, None)
            if sig is not None and signal.getsignal(sig) not in (signal.SIG_IGN, None):
                before[sig] = signal.signal(sig, lambda signum, frame: held.append(signum))
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(held):  # (each once, in order)
            signal.raise_signal(sig)


@contextlib.contextmanager
def ignored():
    """Ctrl-C, SIGTERM and SIGHUP ignored for the block, then their handlers put back (a signal that came meanwhile
    is dropped): for the last words of a program that is ending anyway (its one line, the cleanup of a refused run),
    which a signal would only cut with a ``KeyboardInterrupt`` traceback. In the main thread only."""
    before = _ignore_all()
    try:
        yield
    finally:
        for sig, handler in before.items():
            if handler is not None:  # (None: a handler not set from Python, which cannot be put back)
                signal.signal(sig, handler)


def at_the_top_of_a_lesson() -> None:
    """A lesson's first line, before its imports (torch and accelerate take seconds): a Ctrl-C, SIGTERM or SIGHUP
    from here until :func:`wideann.course.run` takes over (:func:`the_run_takes_over`) ends the lesson with one line,
    ``<lesson>: interrupted before training started; nothing was written``, and exit code 130, where it ended in a
    ``KeyboardInterrupt`` traceback (or, for SIGTERM, silently by the signal). Nothing has been written then: no
    cleanup is needed, and the process ends at once (``os._exit``; said by the main process only). Only signals
    left as Python sets them are taken (one ignored from the start, as ``nohup`` ignores SIGHUP, stays ignored);
    in the main thread only. The interpreter's own start, before this line, stays as Python makes it."""
    if threading.current_thread() is not threading.main_thread():
        return
    for name in INTERRUPTS:
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is (signal.default_int_handler if name == "SIGINT"
                                                         else signal.SIG_DFL):
            _BEFORE_THE_RUN[sig] = signal.signal(sig, _before_the_run)


_BEFORE_THE_RUN: dict = {}
"""The handlers :func:`at_the_top_of_a_lesson` replaced, by signal, for :func:`the_run_takes_over`."""


def _before_the_run(signum, frame):
    # (the main process speaks for all; sys.stderr, not descriptor 2, which a stderr closed at the start leaves to
    # the next file opened; it may be in the middle of a write here, which then raises: the line is lost, not the 130)
    if os.environ.get("RANK", "0") == "0" and sys.stderr is not None:
        program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "lesson"
        try:
            sys.stderr.write(f"{program}: interrupted before training started; nothing was written\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - nothing may turn this end into a traceback
            pass
    os._exit(130)


def the_run_takes_over() -> None:
    """The handlers :func:`at_the_top_of_a_lesson` set and :func:`stop_like_ctrl_c` left are put back as they were:
    from here on an interrupt is a ``KeyboardInterrupt`` (SIGTERM and SIGHUP too, :func:`stop_like_ctrl_c` called
    first), which the run turns into its line, with what it has written cleaned up."""
    for sig, before in _BEFORE_THE_RUN.items():
        if signal.getsignal(sig) is _before_the_run:
            signal.signal(sig, before)
    _BEFORE_THE_RUN.clear()


def ignore_interrupts() -> None:
    """Ctrl-C, SIGTERM and SIGHUP ignored from now on (in the main thread only; elsewhere nothing changes): for a
    program whose work is done, which a late signal must not turn into a failure."""
    _ignore_all()


def _ignore_all() -> dict:
    """Ctrl-C, SIGTERM and SIGHUP ignored (in the main thread only); returns the handlers they had, by signal."""
    before = {}
    if threading.current_thread() is threading.main_thread():
        for name in INTERRUPTS:
            sig = getattr(signal, name, None)
            if sig is not None:
                before[sig] = signal.signal(sig, signal.SIG_IGN)
    return before
