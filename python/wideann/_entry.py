"""The ``wideann`` program (the console script, and ``python -m wideann``): the command line of
:mod:`wideann.cli`, entered through this module, which imports nothing else of the package before it is ready
for Ctrl-C.

Importing the command line (the package's modules, the C++ engine) takes a few tens of milliseconds. A Ctrl-C
there ended the program in a ``KeyboardInterrupt`` traceback, where any other moment gives one line and exit
code 130. Here the import is inside the ``try`` that turns it into that line: nothing has been written yet.
(``import wideann`` imports nothing of its own, so that this module runs first; the interpreter's own start
and the console script's ``import re`` come before any code of this package, and stay as Python makes them.)
"""
import codecs
import io
import os
import sys

INTERRUPTED = "wideann: interrupted; no output written"
"""What the program says when Ctrl-C stops it before its work is done (:func:`wideann.cli.main` says it too)."""


CLOSED_AT_START: dict = {}
"""The standard streams (0, 1, 2) that were closed when the program started (``2>&-``), each then opened on
``/dev/null`` by :func:`standard_streams` (or, without one, held closed): ``{fd: True}``."""


def standard_streams() -> None:
    """Make the standard streams safe to use, before anything else is opened.

    A standard stream closed by the caller (``wideann ... 2>&-``, a daemon, a cron job) is opened on
    ``/dev/null``: Python leaves ``sys.stderr`` None then (``.isatty()`` on it ended the command), and the
    next file opened would take its number, so that a message for stderr would be written into an input or
    an output. Where ``/dev/null`` cannot be opened, the stream stays closed, its number taken
    (:func:`_hold_closed`): the command still runs, and says what it has to say on the streams that are open.
    Then stdout is made to show what its encoding cannot spell escaped rather than fail
    (:func:`escape_what_stdout_cannot_encode`)."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        CLOSED_AT_START[fd] = True
        if not _null_onto(fd, os.O_RDWR):  # no /dev/null (a bare container, a sandbox): the stream stays closed,
            _hold_closed(fd, name)          # its number taken
            continue
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False, errors="backslashreplace" if fd else "strict"))
    escape_what_stdout_cannot_encode()


def write_nowhere(fd: int, name: str) -> None:
    """From now on what is written to the standard stream ``fd`` (``sys.<name>``) goes nowhere: it is opened on
    ``/dev/null`` (a stdout whose reader has left, ``| head -1``: no second error as Python flushes it at the
    end), or, without one, held closed and ``sys.<name>`` made :class:`_Closed`."""
    if not _null_onto(fd, os.O_WRONLY):
        _hold_closed(fd, name, replace=True)


def _null_onto(fd: int, flags: int) -> bool:
    """``/dev/null`` opened (with ``flags``) as the descriptor ``fd``; False where it cannot be opened."""
    try:
        null = os.open(os.devnull, flags)
    except OSError:
        return False
    if null != fd:
        os.dup2(null, fd)
        os.close(null)
    return True


def _hold_closed(fd: int, name: str, replace: bool = False) -> None:
    """A closed standard stream ``fd`` that could not be opened on ``/dev/null``: its number is taken by a
    descriptor that reads and writes nothing (``O_PATH`` on ``/``: EBADF, as the closed stream), so that no file
    opened later takes it, and ``sys.<name>``, if None (or with ``replace``), becomes :class:`_Closed` (what is
    written there goes nowhere). Where not even that can be opened, the descriptor is left as it was."""
    try:
        held = os.open("/", getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY)
    except OSError:
        held = None
    if held is not None and held != fd:
        os.dup2(held, fd)
        os.close(held)
    if replace or getattr(sys, name) is None:
        setattr(sys, name, _Closed())


class _Closed(io.TextIOBase):
    """A standard stream that was closed and stays closed: written to, it takes the text and keeps none (as
    ``/dev/null``); read, it is at its end; not a terminal."""

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def read(self, size=-1) -> str:
        return ""

    def readline(self, size=-1) -> str:
        return ""

    def write(self, text: str) -> int:
        return len(text)


def escape_what_stdout_cannot_encode() -> None:
    """A stdout whose encoding cannot spell a character (Latin-1 or ASCII and ``€``) shows it as ``\\u20ac``, as
    Python's stderr does, instead of raising ``UnicodeEncodeError`` in the middle of a command or a lesson; a file
    name's byte that is not UTF-8 (a surrogate, as Python decodes it) is written as that byte, as Python's own
    ``surrogateescape`` writes it (the name as the user's terminal shows it in ``ls``)."""
    out = sys.stdout
    if getattr(out, "errors", None) in ("strict", "surrogateescape") and hasattr(out, "reconfigure"):
        try:
            out.reconfigure(errors=_ESCAPE)
        except (ValueError, OSError, LookupError):
            pass


def printable(text: str) -> str:
    """``text`` as one line of valid UTF-8 that shows the text it holds: a file name's bytes that are not UTF-8
    (which Python holds as surrogate escapes) show as ``\\xNN``, and so does every character that
    :meth:`str.isprintable` refuses but the space: control characters (``\\x1b``; ``\\u0085``, ``\\u2028`` for the
    Unicode ones that break lines), and the ones that make a line lie about its text: a direction override
    (``\\u202e`` shows the rest of the line reversed), a zero-width space (``\\u200b``), a BOM (``\\ufeff``), a no-break
    space (``\\u00a0``): the characters that the lessons' informational lines escape too
    (:func:`wideann.course.tables.shell_path`). A character is ``\\xNN`` below U+0080, ``\\uNNNN`` from there
    (``\\xNN`` above is a byte), ``\\UNNNNNNNN`` beyond U+FFFF, as the engine writes them in a cell's excerpt (one
    that it leaves raw, a ``\\u202e``, is escaped here: every engine message reaches the user through this). Used
    for the command line's lines, and the lessons' error lines (:func:`wideann.course.errors.shown`, ``ours``,
    ``one_line``)."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() or c == " " else _escaped(c) for c in text)


def _escaped(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x80 else f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}"


def counted(n: int, what: str) -> str:
    """``1 row``, ``2 rows``: a count and what it counts, in the command line's summaries and the lessons' lines."""
    return f"{n} {what}" + ("" if n == 1 else "s")


def _bytes_or_escaped(e: UnicodeError):
    """The error handler of :func:`escape_what_stdout_cannot_encode`: surrogates back to the bytes they stand for,
    anything else the encoding cannot spell backslash-escaped."""
    if isinstance(e, UnicodeEncodeError):
        text = e.object[e.start:e.end]
        if all("\udc80" <= c <= "\udcff" for c in text):
            return bytes(ord(c) - 0xDC00 for c in text), e.end
    return codecs.backslashreplace_errors(e)


_ESCAPE = "wideann.bytes_or_escaped"
codecs.register_error(_ESCAPE, _bytes_or_escaped)


def console() -> None:
    standard_streams()
    try:
        from .cli import console as the_command_line

        the_command_line()
    except RuntimeError as e:  # (an engine refused: a source checkout's not rebuilt since csrc/ changed, or none
        if type(e).__module__ != f"{__package__}._native_checked":  # at all; one line, as any failure. The class
            raise  # is not imported here, to import nothing; its module is gone from sys.modules, its import failed)
        print(f"wideann: error: {printable(str(e))}", file=sys.stderr)  # (a newline in the checkout's path)
        sys.exit(1)
    except KeyboardInterrupt:  # (one that main() did not turn into its line: before it began, as it is imported, or
        cli = sys.modules.get(f"{__package__}.cli")  # in the instant its handler began, as the interrupt came twice)
        if getattr(cli, "_RUNNING", None) is not None:  # main() began: its output may be complete
            sys.exit(cli.interrupted())
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
