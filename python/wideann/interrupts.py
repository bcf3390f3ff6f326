"""Termination signals handled like Ctrl-C, so that the cleanup of an interrupt runs for them too.

``kill``, a batch scheduler's time limit (SIGTERM) or a closed terminal or dropped ssh session (SIGHUP)
would otherwise end the process at once, leaving the temporary files of its outputs (as large as a
table) behind. With :func:`stop_like_ctrl_c` they raise ``KeyboardInterrupt`` in the main thread: the
C++ engine is cancelled, temporary files are removed, and the command or lesson ends with exit code 130.
A signal that is ignored when the process starts (``nohup`` ignores SIGHUP) stays ignored.
"""
from __future__ import annotations

import signal
import threading

SIGNALS = ("SIGTERM", "SIGHUP")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def stop_like_ctrl_c() -> None:
    """SIGTERM and SIGHUP raise ``KeyboardInterrupt`` (in the main thread only; elsewhere, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for name in SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _interrupt)
