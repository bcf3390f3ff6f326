"""A progress bar over the batches of one epoch (or of a prediction run), for the lessons and the CLI.

>>> batches = progress.bar(train_loader, f"epoch {epoch}", args.quiet, accelerator)
>>> for x, y in batches:
...     ...
...     total_loss += loss.item() * len(x)
...     batches.show_loss(total_loss / batches.rows)   # the running loss of the epoch (or a function of none
...                                                    # arguments that returns it: read when the bar is drawn)

The bar (tqdm, on stderr) shows the steps done out of the epoch's, the rows per second and the running
loss. It is drawn only where someone can watch it: on the main process, when stderr is a terminal, and
not with ``--quiet``. Otherwise the wrapper just passes the batches through (it still counts ``rows``),
so logs and pipes never fill with bar updates.
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator

REFRESH_SECONDS = 0.25
"""How often the bar is redrawn (and its rate and loss recomputed) at most."""


def shown(quiet: bool = False, accelerator=None) -> bool:
    """Would a bar be drawn here? Not with ``quiet``, not on other processes than the main one, and
    only when stderr is a terminal."""
    if quiet or (accelerator is not None and not accelerator.is_main_process):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


def _rows_of(batch) -> int:
    """Rows in a batch: ``(x, y)`` -> ``len(x)``; a tensor or array of row numbers -> its length."""
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    try:
        return len(batch)
    except TypeError:
        return 1


class Bar:
    """Iterate over ``batches`` with a progress bar; see the module docstring.

    ``total`` is the number of steps (default: ``len(batches)`` when it has one) and ``initial`` the
    steps already done before (an epoch resumed from a checkpoint). ``rows`` counts the rows of the
    batches handed out so far, the current one included.
    """

    def __init__(self, batches: Iterable, desc: str = "", quiet: bool = False, accelerator=None, *,
                 total: int | None = None, initial: int = 0, unit: str = "steps"):
        self._batches = batches
        self.rows = 0
        self._loss: float | None = None
        self._bar = None
        if total is None:
            try:
                total = len(batches) + initial  # type: ignore[arg-type]
            except TypeError:
                total = None
        if shown(quiet, accelerator):
            from tqdm import tqdm

            # drawn by __iter__ only (mininterval=inf), so that each step costs tqdm no clock reads
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr,
                             leave=False, dynamic_ncols=True, mininterval=float("inf"),
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} " + unit
                                        + " [{elapsed}<{remaining}{postfix}]")

    def show_loss(self, value) -> None:
        """The loss to show next to the rate (the running mean of the epoch so far): a number, or a function
        that returns it, called only when the bar is redrawn (reading a loss that lives on a GPU makes the
        host wait for the GPU: a few times a second costs nothing, every step does)."""
        self._loss = value

    def _postfix(self, elapsed: float) -> str:
        text = f"{self.rows / elapsed:,.0f} rows/s" if elapsed > 0 else "- rows/s"
        loss = self._loss() if callable(self._loss) else self._loss
        if loss is not None:
            text += f", loss {loss:.4g}"
        return text

    def __iter__(self) -> Iterator:
        bar = self._bar
        if bar is None:
            for batch in self._batches:
                self.rows += _rows_of(batch)
                yield batch
            return
        start = last = now = time.perf_counter()
        try:
            for batch in self._batches:
                self.rows += _rows_of(batch)
                yield batch
                bar.update(1)
                now = time.perf_counter()
                if now - last >= REFRESH_SECONDS:
                    bar.set_postfix_str(self._postfix(now - start), refresh=True)
                    last = now
            if last != now:  # the last numbers of the epoch, drawn once whatever its length
                bar.set_postfix_str(self._postfix(time.perf_counter() - start), refresh=True)
        finally:
            self.close()

    def close(self) -> None:
        """Remove the bar from the terminal (done by itself at the end of the loop, or on a ``break``)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def bar(batches: Iterable, desc: str = "", quiet: bool = False, accelerator=None, **kwargs) -> Bar:
    """``Bar(batches, desc, quiet, accelerator, total=..., initial=...)``: see :class:`Bar`."""
    return Bar(batches, desc, quiet, accelerator, **kwargs)
