"""Honest small-sample statistics end to end: a class that cannot reach every partition is refused by name,
or kept with its metrics not estimable; no scikit-learn warning reaches the console."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lablens.cli import app
from lablens.phantoms import get_task
from lablens.phantoms.write import write_phantoms

runner = CliRunner()


@pytest.fixture(scope="module")
def rare_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rare")
    write_phantoms(get_task("ana-hep2"), root / "d", n=160, seed=4, size=40)
    man = pd.read_csv(root / "d" / "manifest.csv", dtype=str)
    keep = man[man["label"].isin(["centromere", "homogeneous", "nucleolar"])]
    rare_groups = sorted(keep.loc[keep["label"] == "nucleolar", "group"].unique())[:2]
    keep = keep[(keep["label"] != "nucleolar") | keep["group"].isin(rare_groups)]
    keep = keep.assign(path="d/" + keep["path"])[["path", "label", "group"]]
    keep.to_csv(root / "data.csv", index=False)
    return root / "data.csv"


def _train(csv: Path, out: Path, *extra: str) -> str:
    r = runner.invoke(
        app,
        ["train", str(csv), "--out", str(out), "--model", "handcrafted", "--image-size", "40", "-q", *extra],
    )
    return f"{r.exit_code}\n{r.output}"


def test_split_leaving_a_class_out_is_refused_naming_it(rare_csv: Path, tmp_path: Path) -> None:
    out = _train(rare_csv, tmp_path / "run", "--split", "kfold:3")
    assert out.startswith("1\n") and "'nucleolar' has 2" in out and "not-estimable" in out
    assert not (tmp_path / "run").exists()


def test_not_estimable_runs_and_says_so_without_library_warnings(rare_csv: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("split:\n  missing_classes: not-estimable\neval:\n  bootstrap: 100\n")
    out = _train(rare_csv, tmp_path / "run", "--split", "kfold:3", "--config", str(cfg))
    assert out.startswith("0\n"), out
    assert "not estimable" in out and "unreliable" in out
    assert "Warning" not in out and "sklearn" not in out
