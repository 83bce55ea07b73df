from __future__ import annotations

from lablens.timing import Phases


def test_phases_add_up_in_order_and_count_the_rest() -> None:
    now = [0.0]
    phases = Phases(start=0.0, clock=lambda: now[0])
    with phases("decode"):
        now[0] = 2.0
    now[0] = 3.0  # 1 s outside any phase
    with phases("train"):
        now[0] = 10.0
    with phases("decode"):  # runs again: adds up
        now[0] = 10.5
    assert list(phases.seconds) == ["decode", "train"]
    assert phases.to_dict() == {"decode": 2.5, "train": 7.0, "other": 1.0, "total": 10.5}
    assert phases.line() == "decode 2.5 s · train 7.0 s · other 1.0 s · total 10.5 s"


def test_a_failing_phase_is_still_timed() -> None:
    now = [0.0]
    phases = Phases(start=0.0, clock=lambda: now[0])
    try:
        with phases("train"):
            now[0] = 4.0
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert phases.seconds == {"train": 4.0}
