"""``lablens demo --task`` runs the whole flow on every phantom task (tiny settings; the timed runs are in the README)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lablens.errors import RunError
from lablens.phantoms import PHANTOMS
from lablens.workflows.demo import demo


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(PHANTOMS))
def test_demo_runs_for_every_task(task: str, tmp_path: Path) -> None:
    n = 6 * len(PHANTOMS.value(task).classes)
    result = demo(
        tmp_path / "demo",
        task=task,
        n=n,
        image_size=32,
        epochs=1,
        model="resnet18",
        weights="scratch",
        progress=False,
    )
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["overall"]["accuracy"]["value"] <= 1.0
    assert (result.run_dir / "report.html").is_file()
    assert result.bundles and (result.bundles[0] / "card.json").is_file()
    card = json.loads((result.bundles[0] / "card.json").read_text())
    assert card["classes"] == sorted(PHANTOMS.value(task).classes)
    rows = pd.read_csv(tmp_path / "demo" / "predictions.csv")
    if "status" not in rows:  # trained on < 20 images: the bundle has no OOD summary
        rows["status"] = "classified"
    classified = rows[rows["status"] == "classified"]  # the rest: held back by the OOD guard, no class
    assert len(classified) >= len(rows) // 2 and set(classified["class_1"]) <= set(
        PHANTOMS.value(task).classes
    )
    assert rows.loc[rows["status"] != "classified", "class_1"].isna().all()


def test_demo_refuses_unknown_task(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="unknown demo task"):
        demo(tmp_path / "d", task="no-such-task", progress=False)
