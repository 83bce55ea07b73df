"""``lablens retrain``: a run's config on its images plus reviewed cells, partitions fixed and locked."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lablens.cli import app
from lablens.config import RunConfig
from lablens.errors import RunError
from lablens.infer.bundle import load_bundle
from lablens.workflows.promote import promote
from lablens.workflows.retrain import retrain
from lablens.workflows.train import train

from conftest import shape_image, write_shape_folder

runner = CliRunner()


def _export(root: Path, samples: int, per_sample: int, seed: int) -> Path:
    """A folder in the `lablens export-reviews` format: label/<name>.png + manifest (path,label,group)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(samples):
        for j in range(per_sample):
            label = ("disc", "ring", "square")[j % 3]
            rel = Path(label) / f"s{s}-{j}.png"
            (root / label).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), shape_image(label, rng, 40)[:, :, ::-1])
            rows.append(
                {"path": rel.as_posix(), "label": label, "group": f"sample-{s + 1}", "sample": f"S{s}"}
            )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("retrain")
    data = write_shape_folder(root / "data", per_class=14, size=40)
    cfg = RunConfig()
    cfg.model.name, cfg.model.image_size = "handcrafted", 40
    cfg.train.threads, cfg.eval.bootstrap = 1, 0
    train(data, root / "run", cfg, progress=False)
    export = _export(root / "export", samples=10, per_sample=6, seed=3)
    # two cells that cannot join: a label the model does not know, and an image already in the run's data
    (export / "blob").mkdir()
    cv2.imwrite(str(export / "blob" / "x.png"), shape_image("disc", np.random.default_rng(9), 40))
    shutil.copy(data / "disc" / "disc_000.png", export / "disc" / "dup.png")
    man = pd.read_csv(export / "manifest.csv")
    extra = pd.DataFrame(
        [
            {"path": "blob/x.png", "label": "blob", "group": "sample-3", "sample": "S2"},
            {"path": "disc/dup.png", "label": "disc", "group": "sample-4", "sample": "S3"},
        ]
    )
    pd.concat([man, extra]).to_csv(export / "manifest.csv", index=False)
    return {"root": root, "data": data, "run": root / "run", "export": export}


def test_retrain_keeps_the_test_partition_locked_and_samples_whole(base: dict[str, Path]) -> None:
    res = retrain(base["run"], [base["export"]], base["root"] / "new", review_test=0.2, progress=False)
    assert res.summary["left_out"] == {
        "missing_file": 0,
        "label_not_a_model_class": 1,
        "already_in_the_data": 1,
    }
    assert res.summary["reviewed_cells_joined"] == 60 and res.summary["review_samples"] == 10
    data = pd.read_csv(res.out / "data.csv")
    old_split = json.loads((base["run"] / "split.json").read_text())["folds"][0]
    old_manifest = pd.read_csv(base["run"] / "manifest.csv")
    old_test = set(old_manifest.loc[old_manifest["id"].isin(old_split["test"]), "path"])
    original = data[data["source"] == "original"]
    assert set(original.loc[original["partition"] == "test", "path"]) == old_test  # locked, unchanged
    reviews = data[data["source"] == "review"]
    assert (reviews.groupby("group")["partition"].nunique() == 1).all()  # a sample never straddles
    test_groups = sorted(reviews.loc[reviews["partition"] == "test", "group"].unique())
    assert test_groups == ["reviews/sample-10", "reviews/sample-9"]  # the two latest of ten samples
    locked = pd.read_csv(res.locked_reviews)
    assert len(locked) == 12 and set(locked["group"]) == set(test_groups)
    card = load_bundle(res.bundle).card
    seen = set(card["training"]["seen_sha256_prefixes"])
    test_sha = set(data.loc[data["partition"] == "test", "sha256"])
    assert not any(s[: len(next(iter(seen)))] in seen for s in test_sha)  # nothing locked was trained on
    assert card["training"]["split"]["n_train"] == int((data["partition"] == "train").sum())
    assert card["training"]["config"]["model"]["name"] == "handcrafted"  # the run's own configuration
    # its validation images were folded into training: their confidence would be over-optimistic, so not kept
    assert card["ood"]["n_images"] == int(data["partition"].isin(["train", "val"]).sum())
    assert card["ood"]["confidence"] is None
    # promote on the locked cases: the original data (seen images dropped → its test partition) + reviews
    with contextlib.suppress(RunError):  # promoted or not, both models were scored on the same locked cases
        promote(
            res.bundle,
            base["run"] / "bundle",
            [base["data"], res.locked_reviews],
            base["root"] / "promotion",
            n_boot=50,
            progress=False,
        )
    doc = json.loads((base["root"] / "promotion" / "promotion.json").read_text())
    assert doc["n"] == len(old_test) + 12


def test_retrain_refuses_what_it_cannot_do(base: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(RunError, match="not a finished lablens train run"):
        retrain(tmp_path, [base["export"]], tmp_path / "x", progress=False)
    with pytest.raises(RunError, match=r"no manifest\.csv"):
        retrain(base["run"], [tmp_path], tmp_path / "x", progress=False)
    with pytest.raises(RunError, match=r"--review-test 1\.0"):
        retrain(base["run"], [base["export"]], tmp_path / "x", review_test=1.0, progress=False)
    result = runner.invoke(
        app, ["retrain", str(base["run"]), "--reviews", str(tmp_path), "-o", str(tmp_path / "y")]
    )
    assert result.exit_code == 1 and "no manifest.csv" in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_network_retrains_from_its_bundle_unless_asked_to_start_over(base: dict[str, Path]) -> None:
    root = base["root"]
    cfg = RunConfig()
    cfg.model.name, cfg.model.image_size = "test_resnet", 40
    cfg.train.epochs, cfg.train.batch_size, cfg.train.augment, cfg.eval.bootstrap = 1, 8, None, 0
    train(base["data"], root / "deep_run", cfg, progress=False)
    run_bundle = load_bundle(root / "deep_run" / "bundle")
    warm = retrain(root / "deep_run", [base["export"]], root / "warm", progress=False)
    init = load_bundle(warm.bundle).card["init"]
    assert init["bundle_hash"] == run_bundle.hash and init["kept"] == ["disc", "ring", "square"]
    cold = retrain(root / "deep_run", [base["export"]], root / "cold", start="run", progress=False)
    assert "init" not in load_bundle(cold.bundle).card
    with pytest.raises(RunError, match="model 'handcrafted' cannot warm-start"):
        retrain(base["run"], [base["export"]], root / "never", start="bundle", progress=False)
