"""``lablens compare`` end to end on tiny grouped data, and the guarantee that no test group reaches training."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from lablens.compare.methods import Method
from lablens.config import RunConfig, apply_overrides
from lablens.errors import RunError
from lablens.features.cache import image_hashes
from lablens.infer.bundle import load_bundle
from lablens.models.classical import FeatureClassifier
from lablens.workflows.compare import compare

from conftest import shape_image


def _grouped_csv(root: Path, patients_per_class: int = 4, per_patient: int = 3, size: int = 40) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for label in ("disc", "ring", "square"):
        for p in range(patients_per_class):
            for i in range(per_patient):
                path = root / label / f"{label}_p{p}_{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), shape_image(label, rng, size)[:, :, ::-1])
                rows.append({"path": str(path.relative_to(root)), "label": label, "group": f"{label}-P{p}"})
    pd.DataFrame(rows).to_csv(root / "images.csv", index=False)
    return root / "images.csv"


TRAINING = {"train.epochs": 1, "train.batch_size": 8, "train.augment.rotate": 0.0}


def _cfg(methods: list[str], *, trained: bool = False, **extra: object) -> RunConfig:
    """A comparison config; ``trained`` adds the settings of the deep methods (none of the others takes them)."""
    return apply_overrides(
        RunConfig(),
        {
            "compare.methods": methods,
            "compare.folds": 3,
            "data.group_column": "group",
            "model.image_size": 40,
            "train.device": "cpu",
            **(TRAINING if trained else {}),
            **extra,
        },
    )


@pytest.mark.slow
def test_compare_writes_ranks_tests_report_and_a_loadable_winner(tmp_path: Path) -> None:
    csv = _grouped_csv(tmp_path / "data")
    cfg = _cfg(
        ["hu+morphology:logreg", "colour:rf", "finetune[test_resnet, tta=false]"],
        trained=True,
        **{"compare.save_winner": True},
    )
    res = compare(csv, tmp_path / "cmp", cfg, progress=False)
    doc = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert [r["rank"] for r in doc["table"]] == sorted(r["rank"] for r in doc["table"])
    assert {r["method"] for r in doc["table"]} == set(cfg.compare.methods)
    assert len(doc["per_fold"]) == 9 and len(doc["folds"]) == 3
    assert len(doc["pairwise"]) == 3
    for pair in doc["pairwise"]:
        assert 0 <= pair["ttest"]["p_value"] <= pair["ttest"]["p_holm"] <= 1
        assert 0 <= pair["mcnemar"]["p_value"] <= pair["mcnemar"]["p_holm"] <= 1
    top = doc["table"][0]["metrics"]["macro_f1"]
    assert len(top["values"]) == 3 and top["ci"][0] <= top["mean"] <= top["ci"][1]
    assert "colour:rf" in doc["importances"]
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert "Pairwise tests" in html and "hu+morphology:logreg" in html and "data:image/png;base64" in html
    preds = pd.read_csv(tmp_path / "cmp" / "predictions" / "colour_rf.csv")
    assert len(preds) == 36 and preds["id"].is_unique  # every image predicted exactly once per repeat
    bundle = load_bundle(res.winner_bundle)
    assert bundle.card["training"]["method"] == doc["winner"]
    assert bundle.classes == ["disc", "ring", "square"]


def test_no_method_ever_sees_a_test_group_in_fitting_scaling_or_search(tmp_path: Path, monkeypatch) -> None:
    csv = _grouped_csv(tmp_path / "data", patients_per_class=6, per_patient=2)
    calls: list[dict] = []

    class Spy(FeatureClassifier):
        def fit(self, X, y, X_val=None, y_val=None, **kwargs):  # type: ignore[override]
            seen = [*X] + ([*X_val] if X_val is not None else [])
            calls.append({"hashes": set(image_hashes(np.stack(seen))), "scaler_rows": []})
            return super().fit(X, y, X_val, y_val, **kwargs)

    original = StandardScaler.fit

    def recording_fit(self, X, y=None, sample_weight=None):  # type: ignore[no-untyped-def]
        calls[-1]["scaler_rows"].append(np.asarray(X).copy())
        return original(self, X, y, sample_weight)

    monkeypatch.setattr(StandardScaler, "fit", recording_fit)
    monkeypatch.setattr(Method, "build", lambda self: Spy(**self.kwargs))
    cfg = _cfg(["hu+lbp:svm_rbf", "colour:logreg"], **{"compare.search": True})
    compare(csv, tmp_path / "cmp", cfg, progress=False)

    manifest = pd.read_csv(tmp_path / "cmp" / "manifest.csv")
    from lablens.data.cache import load_pixels

    pixels = load_pixels(manifest["path"].tolist(), manifest["sha256"].tolist(), 40)
    hashes = image_hashes(pixels)
    group_of = dict(zip(hashes, manifest["group"], strict=True))
    assert len(calls) == 2 * 3
    for i, call in enumerate(calls):
        spec = ["hu+lbp", "colour"][i // 3]
        feats = FeatureClassifier(features=spec, image_size=40).transform(np.asarray(pixels))
        test = [h not in call["hashes"] for h in hashes]
        train_groups = {group_of[h] for h in call["hashes"]}
        test_groups = {group_of[h] for h, t in zip(hashes, test, strict=True) if t}
        assert test_groups and not train_groups & test_groups
        test_rows = {row.tobytes() for row in feats[np.asarray(test)]}
        assert len(call["scaler_rows"]) > 3  # search folds + calibration folds + the refit all scaled
        for rows in call["scaler_rows"]:
            assert not {r.tobytes() for r in rows.astype(np.float32)} & test_rows


def test_refuses_a_non_empty_folder_and_bad_methods_before_any_work(tmp_path: Path) -> None:
    csv = _grouped_csv(tmp_path / "data", patients_per_class=3, per_patient=1)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty"):
        compare(csv, tmp_path / "used", _cfg(["hu:rf"]), progress=False)
    assert (tmp_path / "used" / "keep.txt").read_text() == "mine"
    with pytest.raises(RunError, match="unknown classifier"):
        compare(csv, tmp_path / "new", _cfg(["hu:catboost"]), progress=False)
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_a_multitask_method_compares_with_the_others(tmp_path: Path) -> None:
    csv = _grouped_csv(tmp_path / "data", patients_per_class=3, per_patient=2)
    methods = [
        "colour:logreg",
        "multitask[model_name=test_efficientnet, weights=scratch, deblur_weight=0, tta=false]",
    ]
    res = compare(csv, tmp_path / "cmp", _cfg(methods, trained=True), progress=False)
    assert {r["method"] for r in res.document["table"]} == set(methods)
    assert len(res.document["per_fold"]) == 6


def test_a_setting_no_method_takes_is_refused_by_name(tmp_path: Path) -> None:
    csv = _grouped_csv(tmp_path / "data", patients_per_class=3, per_patient=1)
    with pytest.raises(RunError, match=r"train.epochs = 1.*none of the methods"):
        compare(csv, tmp_path / "a", _cfg(["hu:rf", "colour:logreg"], trained=True), progress=False)
    with pytest.raises(RunError, match=r"compare.search = True.*none of the methods"):
        compare(
            csv, tmp_path / "b", _cfg(["finetune[test_resnet]"], **{"compare.search": True}), progress=False
        )
    with pytest.raises(RunError, match=r"unknown option\(s\) \['colour'\] for model 'multitask'"):
        compare(csv, tmp_path / "c", _cfg(["multitask[colour=1]"]), progress=False)
    assert not any((tmp_path / d).exists() for d in "abc")
