"""Progress bars for long work: rich on a terminal, nothing in logs and pipes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(
    description: str, total: int, enabled: bool = True
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draw a transient rich bar on stderr if it is a terminal.

    Examples:
        >>> with progress_bar("work", total=3, enabled=False) as advance:
        ...     advance(3)
    """
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:  # a bar in a log file is noise
        yield lambda n: None
        return
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
