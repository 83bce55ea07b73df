"""``lablens suggest``: batches in the layout train reads, never repeated, excluding what is labelled; replayable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lablens.cli import app
from lablens.workflows.suggest import suggest

from conftest import tiny_bundle, write_shape_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("suggest")
    bundle, _ = tiny_bundle(root / "bundle")
    pool = write_shape_folder(root / "pool", per_class=10, size=32, seed=5)
    return {"root": root, "bundle": bundle, "pool": pool}


def test_batches_accumulate_without_repeating_an_image_and_replay_by_seed(setup: dict[str, Path]) -> None:
    root = setup["root"]
    first = suggest(setup["bundle"], [setup["pool"]], root / "s", n=8, ood_alpha=None, progress=False)
    second = suggest(setup["bundle"], [setup["pool"]], root / "s", n=8, ood_alpha=None, progress=False)
    assert first.batch.name == "batch-001.csv" and second.batch.name == "batch-002.csv"
    a, b = pd.read_csv(first.batch, dtype=str), pd.read_csv(second.batch, dtype=str)
    assert list(a.columns[:2]) == ["path", "label"] and a["label"].isna().all()  # train's layout, to fill in
    assert len(a) == len(b) == 8 and not set(a["path"]) & set(b["path"])
    assert second.n_excluded == 8 and (root / "s" / "batch-001.png").stat().st_size > 0
    again = suggest(setup["bundle"], [setup["pool"]], root / "t", n=8, ood_alpha=None, progress=False)
    assert pd.read_csv(again.batch, dtype=str).equals(a)


def test_labelled_images_are_never_suggested_even_as_copies(setup: dict[str, Path]) -> None:
    pool, root = setup["pool"], setup["root"]
    labelled = sorted(pool.rglob("*.png"))[:12]
    copies = root / "labelled"
    copies.mkdir()
    for f in labelled:
        (copies / f"copy-{f.name}").write_bytes(f.read_bytes())
    res = suggest(
        setup["bundle"], [pool], root / "u", n=30, labelled=[str(copies)], ood_alpha=None, progress=False
    )
    taken = {hashlib.sha256(f.read_bytes()).hexdigest() for f in labelled}
    assert not taken & set(res.table["sha256"]) and len(res.table) == 30 - 12


def test_the_command_writes_a_batch_and_refuses_a_bad_rule_in_one_line(setup: dict[str, Path]) -> None:
    out = setup["root"] / "cli"
    done = runner.invoke(
        app, ["suggest", str(setup["bundle"]), str(setup["pool"]), "--n", "5", "-o", str(out)]
    )
    assert done.exit_code == 0, done.output
    assert "5 images to label" in done.output and (out / "batch-001.yaml").exists()
    bad = runner.invoke(
        app, ["suggest", str(setup["bundle"]), str(setup["pool"]), "--rule", "bald", "-o", str(out)]
    )
    assert bad.exit_code == 1 and "rule" in bad.output and "Traceback" not in bad.output
    assert not (out / "batch-002.csv").exists()
