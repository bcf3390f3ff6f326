"""The ``wideann`` program (the console script, and ``python -m wideann``): the command line of
:mod:`wideann.cli`, entered through this module, which imports nothing else of the package before it is ready
for Ctrl-C.

Importing the command line (the package's modules, the C++ engine) takes a few tens of milliseconds. A Ctrl-C
there ended the program in a ``KeyboardInterrupt`` traceback, where any other moment gives one line and exit
code 130. Here the import is inside the ``try`` that turns it into that line: nothing has been written yet.
(``import wideann`` imports nothing of its own, so that this module runs first; the interpreter's own start
and the console script's ``import re`` come before any code of this package, and stay as Python makes them.)
"""
import os
import sys

INTERRUPTED = "wideann: interrupted; no output written"
"""What the program says when Ctrl-C stops it before its work is done (:func:`wideann.cli.main` says it too)."""


CLOSED_AT_START: dict = {}
"""The standard streams (0, 1, 2) that were closed when the program started (``2>&-``), each then opened on
``/dev/null`` by :func:`standard_streams`: ``{fd: True}``."""


def standard_streams() -> None:
    """Make the standard streams safe to use, before anything else is opened.

    A standard stream closed by the caller (``wideann ... 2>&-``, a daemon, a cron job) is opened on
    ``/dev/null``: Python leaves ``sys.stderr`` None then (``.isatty()`` on it ended the command), and the
    next file opened would take its number, so that a message for stderr would be written into an input or
    an output. A stdout whose encoding cannot spell a name (a Latin-1 locale and a column named ``€``; a file
    name that is not UTF-8 under a strict UTF-8 locale) shows it escaped, as stderr does, rather than fail."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        CLOSED_AT_START[fd] = True
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False, errors="backslashreplace" if fd else "strict"))
    escape_what_stdout_cannot_encode()


def escape_what_stdout_cannot_encode() -> None:
    """A stdout whose encoding cannot spell a character (Latin-1 or ASCII and ``€``; UTF-8 and a file name's
    byte that is not UTF-8) shows it as ``\\u20ac`` or ``\\udcff``, as Python's stderr does, instead of raising
    ``UnicodeEncodeError`` in the middle of a command or a lesson. (Under the C locale Python's own policy,
    ``surrogateescape``, passes a file name's bytes but fails on any other character outside ASCII.)"""
    out = sys.stdout
    if getattr(out, "errors", None) in ("strict", "surrogateescape") and hasattr(out, "reconfigure"):
        try:
            out.reconfigure(errors="backslashreplace")
        except (ValueError, OSError):
            pass


def console() -> None:
    standard_streams()
    try:
        from .cli import console as the_command_line

        the_command_line()
    except KeyboardInterrupt:  # (one that main() did not turn into its line: before it began, as it is imported, or
        cli = sys.modules.get(f"{__package__}.cli")  # in the instant its handler began, as the interrupt came twice)
        if getattr(cli, "_RUNNING", None) is not None:  # main() began: its output may be complete
            sys.exit(cli.interrupted())
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
