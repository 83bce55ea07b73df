"""Wall time of a run's named phases (decode, training, calibration, …), for the figures a user sees."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Phases:
    """Seconds spent in each named phase, in the order the phases first ran; ``total`` counts from ``start``."""

    def __init__(self, start: float | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.start = clock() if start is None else start
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as phase ``name`` (a phase that runs again, e.g. per fold, adds up)."""
        t = self._clock()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + self._clock() - t

    def total(self) -> float:
        return self._clock() - self.start

    def to_dict(self) -> dict[str, float]:
        """Phase → seconds (rounded to 0.1 s), and ``total``; ``other`` is what no phase covered (start-up…)."""
        total = self.total()
        doc = {name: round(s, 1) for name, s in self.seconds.items()}
        doc["other"] = round(max(0.0, total - sum(self.seconds.values())), 1)
        doc["total"] = round(total, 1)
        return doc

    def line(self) -> str:
        return " · ".join(f"{name} {s:.1f} s" for name, s in self.to_dict().items())
