"""``wideann.DataError``, the error of bad input data: a class of Python's, which the C++ engine raises too (its
bindings take it from here), so that an error is shown the same way wherever it was raised."""
from __future__ import annotations

from ._entry import printable


class DataError(ValueError):
    """Bad input data (a ``ValueError``): the message names the file, and for a CSV the line and column (1-based).

    ``str(e)`` is one line of valid UTF-8 text, the line the ``wideann`` command prints: in a file name (or a cell
    the message quotes) a newline or another control character, a character that hides or reorders text (U+202E,
    U+200B) and a byte that is not UTF-8 show as ``\\xNN`` (``\\uNNNN``), as :func:`wideann._entry.printable`
    writes them, so that a log of it stays one line that says which file. For programs, ``e.args[0]`` is the
    message as made, a newline in it as it is (a byte that is not UTF-8 is ``\\xNN`` there too in the engine's),
    and ``e.filename`` the exact name of the file the error is about, as the path was given (a name that is not
    UTF-8 as ``os.fsdecode`` gives it, to be opened again): set by the engine's jobs, ``compute_stats``,
    ``normalize``, ``denormalize`` and ``make_data``, for an input or output they were given; ``None`` otherwise
    (an error of :mod:`wideann.data`, of ``predict``)."""

    def __init__(self, *args, filename=None):
        super().__init__(*args)
        self.filename = filename

    def __str__(self) -> str:
        return printable(super().__str__())
