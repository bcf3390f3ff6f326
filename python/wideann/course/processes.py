"""Steps that several processes take together: each learns whether any of them failed (:func:`settle`),
work done on one process per machine first (:func:`in_turn`), and the test hook that stops the main
process at the moments a kill or a full disk matters most (:func:`pause`)."""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from .._atomic import atomic_path
from .errors import LessonError, is_main_rank, one_line, user_error


class PeerFailed(LessonError):
    """Another process failed at a step that every process takes together (its one-line report)."""


def settle(accelerator, error: BaseException | None, on_failure=None) -> None:
    """Every process learns whether any of them failed at a step they take together, and all raise.

    The process that failed raises its own error again; the others raise :class:`PeerFailed` with its
    one-line report, so that the main process, the one :func:`run` lets speak, can always say what went
    wrong, and no process is left waiting for one that has ended. ``on_failure`` (cleanup) runs on the
    main process first. Every process must call this at the same points.
    """
    reports = [None if error is None else "failed"]
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        mine = None
        if error is not None:
            mine = user_error(error) or (1, f"process {accelerator.process_index} failed: {type(error).__name__}: "
                                            f"{one_line(str(error))} (its traceback is above)")
        reports = gather_object([mine])
    failed = [r for r in reports if r is not None]
    if not failed:
        return
    if on_failure is not None and (accelerator is None or accelerator.is_main_process):
        with contextlib.suppress(Exception):
            on_failure()
    if error is not None:
        raise error
    code, line = failed[0]
    peer = PeerFailed(line)
    peer.exit_code = code
    raise peer


def in_turn(accelerator, work):
    """``work()`` on the first process of each machine, then on the others (which find its files made);
    a failure anywhere ends every process, with the failure's one line said once."""
    if accelerator is None:
        return work()
    result = None
    for first in (True, False):
        error = None
        if accelerator.is_local_main_process is first:
            try:
                result = work()
            except Exception as e:  # noqa: BLE001 - raised again by settle, on every process
                error = e
        settle(accelerator, error)
    return result


_pauses: dict[str, int] = {}


def pause(point: str) -> None:
    """Test hook at the moments a kill or a full disk matters most (``checkpoint-begin``,
    ``checkpoint-written``, ``checkpoint-swapped``, ``checkpoint-pruning``, ``model-begin``, ``model-written``,
    ``model-saved``, ``predictions-begin``, ``earlier-run-listed``; ``resumed``: a checkpoint loaded, its kept files
    back; ``refused``: a run refused, before its line and the removal of the folders it made; ``interrupted``: a
    run interrupted, before its line; ``taking-over``: as ``course.run`` starts, SIGTERM and SIGHUP taken, Ctrl-C
    not yet).

    With ``WIDEANN_TEST_PAUSE=<point>[:<n>]`` the main process stops itself (SIGSTOP) the n-th time it
    reaches ``point``, after writing its pid into the file ``WIDEANN_TEST_PAUSE_FILE``: a test can then
    kill it there, or fill its disk and let it go on (SIGCONT). Without the variable, nothing happens.
    """
    want = os.environ.get("WIDEANN_TEST_PAUSE")
    if not want or not is_main_rank():
        return
    name, _, nth = want.partition(":")
    if name != point:
        return
    _pauses[point] = _pauses.get(point, 0) + 1
    if _pauses[point] != int(nth or 1):
        return
    report = os.environ.get("WIDEANN_TEST_PAUSE_FILE")
    if report:
        with atomic_path(report) as tmp:
            Path(tmp).write_text(f"{os.getpid()}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSTOP)
