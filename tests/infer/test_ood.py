"""The out-of-distribution guard: image statistics, conformal thresholds, the submission verdict, and the
acceptance figures on phantoms (a blood-cell bundle against ANA and kidney images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lablens.config import RunConfig
from lablens.infer.bundle import load_bundle
from lablens.infer.ood import (
    FEATURES,
    OUT_OF_DISTRIBUTION,
    OodSummary,
    conformal_threshold,
    image_statistics,
    parse_alpha,
)
from lablens.infer.predictor import Predictor
from lablens.phantoms import write_phantoms
from lablens.workflows.predict import predict
from lablens.workflows.predict_archive import predict_archive
from lablens.workflows.train import train


def test_image_statistics_are_exact() -> None:
    x = np.random.default_rng(0).integers(0, 256, (3, 17, 13, 3), dtype=np.uint8)
    s = image_statistics(x)
    assert s.shape == (3, len(FEATURES))
    f = x.reshape(3, -1, 3) / 255.0
    np.testing.assert_allclose(s[:, 0:3], f.mean(1))
    np.testing.assert_allclose(s[:, 3:6], f.std(1))
    for c in range(3):
        want = np.percentile(f[:, :, c], [5, 25, 50, 75, 95], axis=1, method="inverted_cdf").T
        np.testing.assert_allclose(s[:, 6 + 5 * c : 11 + 5 * c], want)
    grey = x.astype(np.float32).mean(3) / 255
    np.testing.assert_allclose(s[:, -2], np.abs(np.diff(grey, axis=2)).mean((1, 2)), rtol=1e-6)
    np.testing.assert_allclose(s[:, -1], np.abs(np.diff(grey, axis=1)).mean((1, 2)), rtol=1e-6)
    np.testing.assert_allclose(image_statistics(x, np.array([2, 0])), s[[2, 0]])
    with pytest.raises(ValueError, match="uint8"):
        image_statistics(x.astype(np.float32))


def test_conformal_threshold_and_alpha_parsing() -> None:
    scores = np.arange(1.0, 100.0)  # 99 held-out scores
    assert conformal_threshold(scores, 0.05) == 95.0  # ceil(100 · 0.95) = 95th smallest
    assert conformal_threshold(scores, 0.01) == 99.0
    assert conformal_threshold(scores, 0.005) == 99.0  # too few scores: their maximum (rate 1/100)
    assert parse_alpha("off") is None and parse_alpha("0.01") == 0.01
    with pytest.raises(ValueError, match=r"--ood '0\.3'"):
        parse_alpha("0.3")


def _summary(confidence: bool = True) -> OodSummary:
    rng = np.random.default_rng(1)
    images = rng.integers(90, 170, (200, 8, 8, 3), dtype=np.uint8)
    top = np.linspace(0.8, 1.0, 50) if confidence else None
    summary = OodSummary.fit(images, top, seed=0)
    assert summary is not None
    return summary


def test_summary_round_trips_through_the_card_and_refuses_unknown_alpha() -> None:
    s = _summary()
    again = OodSummary.from_card(json.loads(json.dumps(s.to_card())))
    assert again is not None
    np.testing.assert_allclose(again.precision, s.precision)
    assert again.thresholds == pytest.approx(s.thresholds)
    assert s.thresholds[0.001] == s.thresholds[0.002] == s.thresholds[0.005]  # 200 images: their maximum
    with pytest.raises(ValueError, match=r"holds OOD thresholds for 0\.001, 0\.002"):
        s.threshold(0.003)
    assert OodSummary.fit(np.zeros((19, 4, 4, 3), np.uint8)) is None
    doc = s.to_card() | {"features": ["other"]}
    with pytest.raises(ValueError, match="other image statistics"):
        OodSummary.from_card(doc)


def test_submission_verdict_binomial_and_confidence_rules() -> None:
    s = _summary()
    limit = s.threshold(0.01)
    calm = np.full(100, limit / 2)
    assert not s.check(calm).flagged
    two = calm.copy()
    two[:2] = limit * 2  # 2 of 100 at alpha 1 %: chance (p ≈ 0.26)
    verdict = s.check(two)
    assert verdict.n_flagged == 2 and not verdict.flagged
    six = calm.copy()
    six[:6] = limit * 2  # p ≈ 5e-4 < 1e-3
    verdict = s.check(six)
    assert verdict.flagged and verdict.reasons[0].startswith("6 of 100 images")
    # confidence: validation 10th percentile is 0.82; a median of 0.6 over 10 images is flagged, not over 9
    verdict = s.check(calm[:10], np.full(10, 0.6))
    assert verdict.flagged and "median top-class probability 0.60 of 10 images" in verdict.reasons[0]
    assert not s.check(calm[:9], np.full(9, 0.6)).flagged
    assert not s.check(calm[:10], np.full(10, 0.95)).flagged


# -- acceptance: a blood-cell phantom bundle against foreign phantoms --------------------------------------------
@pytest.fixture(scope="module")
def blood(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ood")
    data = root / "blood"
    write_phantoms("blood-cells", data, n=400, seed=0, size=64)
    cfg = RunConfig()
    cfg.model.name = "test_efficientnet"
    cfg.model.image_size = 64
    cfg.train.epochs = 1
    cfg.train.batch_size = 32
    cfg.train.device = "cpu"
    cfg.eval.bootstrap = 50
    train(data, root / "run", cfg, progress=False)
    sets = {"bundle": root / "run" / "bundle", "root": root}
    for task, seed in (("blood-cells", 1), ("ana-hep2", 0), ("kidney-if", 0)):
        write_phantoms(task, root / f"{task}-{seed}", n=300, seed=seed)
        sets[task] = root / f"{task}-{seed}"
    return sets


def _flagged(bundle: Path, folder: Path) -> float:
    result = Predictor(load_bundle(bundle), device="cpu", backend="torch").predict_files([folder])
    return float((result.status == OUT_OF_DISTRIBUTION).mean())


def test_blood_bundle_flags_foreign_images_and_few_unseen_blood_cells(blood: dict[str, Path]) -> None:
    card = load_bundle(blood["bundle"]).card
    split = card["training"]["split"]  # fitted on the training + validation images, confidence on validation
    assert card["ood"]["n_images"] == split["n_train"] + split["n_val"]
    assert card["ood"]["confidence"]["n_images"] == split["n_val"]
    unseen = _flagged(blood["bundle"], blood["blood-cells"])
    ana = _flagged(blood["bundle"], blood["ana-hep2"])
    kidney = _flagged(blood["bundle"], blood["kidney-if"])
    print(f"flagged: unseen blood {unseen:.3f}, ANA {ana:.3f}, kidney {kidney:.3f}")
    assert unseen <= 0.05
    assert ana >= 0.90 and kidney >= 0.90


def test_predict_outputs_carry_the_guard(blood: dict[str, Path]) -> None:
    out = blood["root"] / "mixed.json"
    mixed = [blood["blood-cells"] / "neutrophil", blood["kidney-if"] / "anti_gbm"]
    result = predict(blood["bundle"], mixed, out, progress=False)
    doc = json.loads(out.read_text())
    rows = doc["predictions"]
    assert {"status", "ood_score"} <= rows[0].keys()
    foreign = [r for r in rows if "kidney" in r["path"]]
    assert foreign and all(r["status"] == OUT_OF_DISTRIBUTION and r["ranked"] == [] for r in foreign)
    verdict = doc["out_of_distribution"]
    assert verdict["alpha"] == 0.01 and verdict["flagged"] == result.n_out_of_distribution
    assert verdict["submission"]["flagged"] and "do not look like the training images" in " ".join(
        verdict["submission"]["reasons"]
    )
    off = predict(blood["bundle"], mixed, blood["root"] / "off.csv", ood_alpha=None, progress=False)
    assert off.ood is None and off.n_out_of_distribution == 0
    assert "ood_score" not in pd.read_csv(blood["root"] / "off.csv").columns


def test_archive_job_counts_and_judges_out_of_distribution_rows(blood: dict[str, Path]) -> None:
    out = blood["root"] / "job"
    res = predict_archive(
        blood["bundle"], [blood["ana-hep2"]], out, shard_size=128, backend="torch", progress=False
    )
    rows = pd.read_parquet(out)
    assert res.summary["out_of_distribution"] == int((rows["status"] == OUT_OF_DISTRIBUTION).sum()) >= 270
    assert rows.loc[rows["status"] == OUT_OF_DISTRIBUTION, "class_1"].isna().all()
    assert rows["ood_score"].notna().all()
    verdict = res.summary["ood_verdict"]
    assert verdict["submission"]["flagged"] and verdict["submission"]["n_images"] == 300
