"""The ``wideann`` program (the console script, and ``python -m wideann``): the command line of
:mod:`wideann.cli`, entered through this module, which imports nothing else of the package before it is ready
for Ctrl-C.

Importing the command line (the package's modules, the C++ engine) takes a few tens of milliseconds. A Ctrl-C
there ended the program in a ``KeyboardInterrupt`` traceback, where any other moment gives one line and exit
code 130. Here the import is inside the ``try`` that turns it into that line: nothing has been written yet.
(``import wideann`` imports nothing of its own, so that this module runs first; the interpreter's own start
and the console script's ``import re`` come before any code of this package, and stay as Python makes them.)
"""
import sys

INTERRUPTED = "wideann: interrupted; no output written"
"""What the program says when Ctrl-C stops it before its work is done (:func:`wideann.cli.main` says it too)."""


def console() -> None:
    try:
        from .cli import console as the_command_line

        the_command_line()
    except KeyboardInterrupt:  # (one that main() did not turn into its line: before it began, as it is imported, or
        cli = sys.modules.get(f"{__package__}.cli")  # in the instant its handler began, as the interrupt came twice)
        if getattr(cli, "_RUNNING", None) is not None:  # main() began: its output may be complete
            sys.exit(cli.interrupted())
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
