"""Progress display kept apart from the work: loops call a small callback object, the CLI chooses Rich.

``Progress`` objects are what long-running functions accept. :class:`RichProgress` draws bars with
live loss/metric fields; :class:`SilentProgress` does nothing (tests, library use).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, highlight=False, soft_wrap=True)


class SilentProgress:
    """A progress sink that shows nothing."""

    def task(self, description: str, total: int) -> _Task:
        return _Task(None, None)

    def log(self, message: str) -> None:
        pass

    def __enter__(self) -> SilentProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class _Task:
    def __init__(self, progress: Progress | None, task_id: Any) -> None:
        self._p = progress
        self._id = task_id

    def advance(self, n: int = 1, **fields: Any) -> None:
        if self._p is not None:
            self._p.update(self._id, advance=n, **({"info": _fmt(fields)} if fields else {}))

    def update(self, completed: int, total: int | None = None, **fields: Any) -> None:
        if self._p is not None:
            kw: dict[str, Any] = {"completed": completed}
            if total is not None:
                kw["total"] = total
            if fields:
                kw["info"] = _fmt(fields)
            self._p.update(self._id, **kw)

    def done(self) -> None:
        if self._p is not None:
            self._p.remove_task(self._id)

    def callback(self, done: int, total: int) -> None:
        """``on_progress(done, total)`` adapter for data functions."""
        self.update(done, total)


def _fmt(fields: dict[str, Any]) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())


class RichProgress(AbstractContextManager):
    """Rich progress bars on stderr with a free ``info`` field (loss, metric …)."""

    def __init__(self, transient: bool = True) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=transient,
        )

    def __enter__(self) -> RichProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def task(self, description: str, total: int) -> _Task:
        return _Task(self._progress, self._progress.add_task(description, total=total, info=""))

    def log(self, message: str) -> None:
        self._progress.console.print(message)


def make_progress(enabled: bool) -> RichProgress | SilentProgress:
    return RichProgress() if enabled else SilentProgress()
