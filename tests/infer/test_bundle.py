"""Bundles: round trip, tamper detection, and refusal of pickle-based files (never unpickled)."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lablens.infer.bundle import BundleError, load_bundle, save_bundle, zip_bundle
from lablens.models.registry import create_estimator
from lablens.train.context import FitContext

from conftest import shape_image


@pytest.fixture(scope="module")
def fitted() -> tuple:
    rng = np.random.default_rng(0)
    y = np.array(["disc", "ring", "square"] * 4)
    X = np.stack([shape_image(c, rng, 32) for c in y])
    est = create_estimator("test_resnet", image_size=32, epochs=1, batch_size=4, augment=None)
    return est.fit(X, y, context=FitContext(device="cpu")), X


def _save(tmp_path: Path, fitted: tuple, name: str = "bundle") -> Path:
    est, _ = fitted
    save_bundle(
        tmp_path / name,
        est,
        estimator_name="test_resnet",
        image_size=32,
        resize_mode="pad",
        temperature=1.7,
        training={"manifest_hash": "abc"},
        metrics={"test": {"accuracy": {"value": 1.0}}},
    )
    return tmp_path / name


def test_roundtrip_predictions_identical(tmp_path: Path, fitted: tuple) -> None:
    est, X = fitted
    path = _save(tmp_path, fitted)
    assert sorted(p.name for p in path.iterdir()) == ["card.json", "weights.safetensors"]
    b = load_bundle(path)
    np.testing.assert_allclose(b.estimator.predict_proba(X), est.predict_proba(X), rtol=1e-6)
    assert b.classes == ["disc", "ring", "square"]
    assert b.temperature == 1.7 and b.image_size == 32
    card = json.loads((path / "card.json").read_text())
    for key in ("classes", "preprocessing", "estimator", "model", "training", "metrics", "versions", "files"):
        assert key in card
    assert "progress" not in card["estimator"]["params"]
    assert len(b.hash) == 64


def test_zip_bundle_loads(tmp_path: Path, fitted: tuple) -> None:
    z = zip_bundle(_save(tmp_path, fitted), tmp_path / "model.zip")
    assert load_bundle(z).classes == ["disc", "ring", "square"]


def test_never_overwrites(tmp_path: Path, fitted: tuple) -> None:
    _save(tmp_path, fitted)
    with pytest.raises(BundleError, match="never overwritten"):
        _save(tmp_path, fitted)


def test_tampered_weights_refused(tmp_path: Path, fitted: tuple) -> None:
    path = _save(tmp_path, fitted)
    data = bytearray((path / "weights.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (path / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the sha256"):
        load_bundle(path)


def test_tampered_card_changes_hash(tmp_path: Path, fitted: tuple) -> None:
    path = _save(tmp_path, fitted)
    h1 = load_bundle(path).hash
    card = json.loads((path / "card.json").read_text())
    card["calibration"]["temperature"] = 0.1
    (path / "card.json").write_text(json.dumps(card))
    assert load_bundle(path).hash != h1


class _Exploit:
    """Unpickling this object would create a marker file: the test proves it never happens."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("kind", ["raw-pickle", "torch-save", "pickle-in-folder", "pickle-as-weights"])
def test_pickle_based_files_are_refused_not_unpickled(tmp_path: Path, fitted: tuple, kind: str) -> None:
    marker = tmp_path / "UNPICKLED"
    payload = {"state_dict": {"w": torch.zeros(2)}, "exploit": _Exploit(marker)}
    if kind == "raw-pickle":
        target = tmp_path / "model.pkl"
        target.write_bytes(pickle.dumps(payload))
        match = "pickle"
    elif kind == "torch-save":
        target = tmp_path / "model.pt"
        torch.save(payload, target)
        match = "pickle"
    elif kind == "pickle-in-folder":
        target = tmp_path / "folder"
        target.mkdir()
        torch.save(payload, target / "model.pth")
        match = "model.pth"
    else:
        target = _save(tmp_path, fitted)
        blob = pickle.dumps(payload)
        (target / "weights.safetensors").write_bytes(blob)
        import hashlib

        card = json.loads((target / "card.json").read_text())
        card["files"]["weights.safetensors"]["sha256"] = hashlib.sha256(blob).hexdigest()
        (target / "card.json").write_text(json.dumps(card))
        match = "pickle"
    with pytest.raises(BundleError, match=match):
        load_bundle(target)
    assert not marker.exists()


def test_zip_without_card_refused(tmp_path: Path) -> None:
    z = tmp_path / "x.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(BundleError, match=r"without card\.json"):
        load_bundle(z)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such"):
        load_bundle(tmp_path / "nope")
