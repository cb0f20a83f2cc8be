"""Progress bars for long work: rich on a terminal, nothing in logs and pipes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

__all__ = ["bar_description", "labelled", "progress_bar", "progress_label"]

T = TypeVar("T")

_LABEL: ContextVar[str] = ContextVar("campaignrl_progress_label", default="")
"""what the current work belongs to (``"ucb1, seed 0"``), shown before every bar's text"""


@contextmanager
def progress_label(label: str) -> Iterator[None]:
    """Prefix every progress bar opened inside the block with ``label``.

    An experiment runs many bars (training, evaluation) for each agent and seed; the label
    says which one a bar belongs to without threading a name through every function.

    Examples:
        >>> with progress_label("ucb1, seed 0"):
        ...     bar_description("training")
        'ucb1, seed 0: training'
        >>> bar_description("training")
        'training'
    """
    if not isinstance(label, str):
        raise TypeError(f"`label` must be a str, got {type(label).__name__}")
    token = _LABEL.set(label)
    try:
        yield
    finally:
        _LABEL.reset(token)


def labelled(items: Iterable[T], *, seed: int | None = None) -> Iterator[T]:
    """Yield each item with ``progress_label("<its name>, seed <seed>")`` around its turn.

    ``for spec in labelled(config.agents, seed=seed): ...`` makes every bar the loop body
    opens say which agent and seed it belongs to (the item's ``name``, else ``str(item)``).

    Examples:
        >>> [bar_description("evaluating") for _ in labelled(["ucb1", "ppo"], seed=3)]
        ['ucb1, seed 3: evaluating', 'ppo, seed 3: evaluating']
    """
    for item in items:
        name = str(getattr(item, "name", item))
        with progress_label(name if seed is None else f"{name}, seed {seed}"):
            yield item


def bar_description(description: str) -> str:
    """``description`` with the current :func:`progress_label` in front, if any."""
    label = _LABEL.get()
    return f"{label}: {description}" if label else description


@contextmanager
def progress_bar(
    description: str, total: int, enabled: bool = True
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draw a transient rich bar on stderr if it is a terminal.

    The bar's text is ``description``, after the enclosing :func:`progress_label` if any.

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
        task = bar.add_task(bar_description(description), total=total)
        yield lambda n: bar.advance(task, n)
