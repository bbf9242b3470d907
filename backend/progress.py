"""The progress bar of management commands that run long work here and now (exports, training, sampling)."""

from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


class ProgressBar:
    """One bar on the terminal; the services' progress callbacks move it."""

    def __init__(self, bar: tqdm) -> None:
        self._bar = bar

    def show(self, done: int, total: int | None = None, **figures: str) -> None:
        """`done` of `total` (kept when not given), with figures beside the bar (e.g. loss="0.693")."""
        if total is not None:
            self._bar.total = total
        self._bar.n = done
        if figures:
            self._bar.set_postfix(figures, refresh=False)
        self._bar.refresh()

    def note(self, text: str) -> None:
        """A line of text beside the bar (what stage the work is in)."""
        self._bar.set_postfix_str(text)

    def advance(self, steps: int = 1) -> None:
        self._bar.update(steps)


@contextmanager
def progress_bar(description: str, *, unit: str, total: int | None = None) -> Iterator[ProgressBar]:
    with tqdm(total=total, desc=description, unit=unit) as bar:
        yield ProgressBar(bar)
