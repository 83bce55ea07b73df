"""``lablens synth-study``: every arm trains on the same real training partition (plus its synthetic images),
validates and tests on the same real images; generators learn from the (cut) training partition only; the
document has every arm's scores with intervals, tests and generator quality; bad requests are one line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lablens.cli import app
from lablens.workflows import synth_study as study

from conftest import write_shape_folder

runner = CliRunner()
TINY = ["--model", "test_resnet", "--weights", "scratch", "--model-size", "32", "--epochs", "2",
        "--image-size", "32", "--gan-epochs", "2", "--diffusion-epochs", "2", "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def studied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("study")
    data = write_shape_folder(root / "real", per_class=30, size=32)
    fits: list[dict[str, Any]] = []
    real_fit = study.create_estimator

    def spying(name: str, **params: Any) -> Any:  # records what every classifier trains and validates on
        est = real_fit(name, **params)
        fit = est.fit

        def recorded(X, y, X_val=None, y_val=None, **kw):
            fits.append(
                {"x": np.asarray(X), "y": np.asarray(y), "x_val": np.asarray(X_val), "params": params}
            )
            return fit(X, y, X_val, y_val, **kw)

        est.fit = recorded
        return est

    mp = pytest.MonkeyPatch()
    mp.setattr(study, "create_estimator", spying)
    try:
        r = runner.invoke(
            app,
            ["synth-study", str(data), "--classes", "ring", "--out", str(root / "out"), "--keep", "12",
             "--ratios", "1,2", "--seeds", "2", *TINY],
        )  # fmt: skip
    finally:
        mp.undo()
    assert r.exit_code == 0, r.output
    return data, root / "out", fits


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_document_scores_every_arm_with_intervals(studied: tuple[Path, Path, list]) -> None:
    _, out, _ = studied
    doc = json.loads((out / "synth_study.json").read_text())
    names = [a["name"] for a in doc["arms"]]
    assert names == ["real", "weighted", "sampler", "focal", "gan×1", "gan×2", "diffusion×1", "diffusion×2"]
    assert doc["rare_train"] == {"ring": 12} and doc["seeds"] == [0, 1]
    res = doc["results"]["ring"]
    assert list(res["scores"]) == names and res["best_remedy"] in ("weighted", "sampler", "focal")
    for scores in res["scores"].values():
        assert set(scores) == {"sensitivity", "ppv", "f1", "macro_f1", "accuracy"}
        assert len(scores["accuracy"]["per_seed"]) == 2
        lo, hi = scores["accuracy"]["ci"]
        assert lo <= scores["accuracy"]["value"] <= hi
    assert [t["method"] for t in res["tests_vs_real"]] == names[1:]
    for method in ("gan", "diffusion"):
        quality = doc["generators"][method]["quality"]["ring"]
        assert quality["memorisation"]["checked"] == 24 and quality["n_real"] == 12
        assert (out / "synthetic" / method / "report.html").is_file()
    table = pd.read_csv(out / "synth_study.csv")
    assert list(table["arm"]) == names and {"f1_lo", "f1_hi"} <= set(table.columns)
    html = (out / "report.html").read_text()
    assert "best remedy" in html and "gan×2" in html and (out / "rare_class.png").stat().st_size > 1000


def test_synthetic_images_only_ever_train(studied: tuple[Path, Path, list]) -> None:
    data, out, fits = studied
    doc = json.loads((out / "synth_study.json").read_text())
    split = json.loads((out / "split.json").read_text())
    assert len(fits) == 8 * 2  # arms × seeds (the checks before training build but never fit)
    n_train, n_val = doc["n_train"], doc["n_val"]
    for f in fits:
        extra = len(f["y"]) - n_train
        assert len(f["x_val"]) == n_val  # the same real validation images in every arm
        assert extra in (0, 12, 24) and (f["y"][n_train:] == "ring").all()
    imbalance = sorted({f["params"]["imbalance"] for f in fits})
    assert imbalance == ["focal", "none", "sampler", "weighted"]
    held = {_sha(data / p) for part in ("val", "test") for p in _paths(split, part)}
    for method in ("gan", "diffusion"):
        sources = set(pd.read_csv(out / "synthetic" / method / "sources.csv")["sha256"])
        assert len(sources) == n_train and not sources & held  # learned from the cut training partition only


def _paths(split: dict, part: str) -> list[str]:
    fold = split["folds"][0]
    return [split["ids"][i] for i in fold[part]] if "ids" in split else fold[part]


def test_keep_takes_whole_groups_first_and_ratios_nest() -> None:
    labels = np.array(["a"] * 6 + ["r"] * 9)
    groups = np.array(["g0"] * 6 + ["p1", "p1", "p1", "p2", "p2", "p3", "p3", "p3", "p3"])
    kept = study.keep_rows(np.arange(15), labels, groups, ["r"], keep=4, seed=0)
    rare = kept[labels[kept] == "r"]
    assert len(rare) == 4 and set(kept[labels[kept] == "a"]) == set(range(6))
    assert len({g for g in groups[rare]}) <= 2  # one whole group, then part of the next
    small = study.synthetic_rows({"r": 10}, {"r": 30}, 1.0, seed=3)["r"]
    large = study.synthetic_rows({"r": 10}, {"r": 30}, 2.5, seed=3)["r"]
    assert len(small) == 10 and len(large) == 25 and set(small) <= set(large)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--classes", "blast"], "'blast' is not a class"),
        (["--classes", "ring", "--keep", "5"], "--keep 5"),
        (["--classes", "ring", "--methods", "vae"], "'vae' is not a generator"),
        (["--classes", "ring", "--model", "handcrafted"], "not a setting of model 'handcrafted'"),
        (["--classes", "ring", "--split", "kfold:3"], "one train:validation:test split"),
    ],
)
def test_bad_requests_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "real", per_class=12, size=32)
    r = runner.invoke(app, ["synth-study", str(data), "--out", str(tmp_path / "out"), *TINY, *args])
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "out").exists()
