"""One rich progress bar style for the metrics (feature extraction, encoder and UNet training)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class _NullProgress:
    """Stands in for a rich Progress when bars are off (tests, nested calls)."""

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def advance(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[Any]:
    """A transient rich progress bar on stderr, or a no-op object with the same methods."""
    if not enabled:
        yield _NullProgress()
        return
    from rich.console import Console

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        yield bar
