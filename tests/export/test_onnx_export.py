"""ONNX export: parity with torch, the automatic ONNX Runtime predictor on CPU, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lablens.cli import app
from lablens.export.onnx import ExportError, dihedral_onnx, export_onnx
from lablens.infer.bundle import load_bundle
from lablens.infer.network import dihedral
from lablens.infer.predictor import Predictor

from conftest import tiny_bundle

runner = CliRunner()


def test_onnx_rotations_are_torch_rotations() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    for k in range(8):
        assert torch.equal(dihedral_onnx(x, k), dihedral(x, k)), k


@pytest.mark.parametrize(("model", "tta"), [("test_resnet", False), ("efficientnet_lite0", True)])
def test_export_matches_torch_and_is_used_on_cpu(tmp_path: Path, model: str, tta: bool) -> None:
    path, X = tiny_bundle(tmp_path / "b", model, temperature=1.3, tta=tta)
    res = export_onnx(path)
    card = json.loads((path / "onnx.json").read_text())
    assert res.path == path / "model.onnx" and card["tta"] is tta
    assert card["parity"]["max_abs_prob_diff"] <= 1e-4 and card["bundle_hash"] == load_bundle(path).hash
    b = load_bundle(path)
    onnx, eager = Predictor(b, device="cpu"), Predictor(b, device="cpu", backend="torch")
    assert onnx.backend == "onnx" and eager.backend == "torch"
    np.testing.assert_allclose(onnx.predict_arrays(X), eager.predict_arrays(X), atol=1e-4)
    bigger = np.stack([np.pad(im, ((4, 4), (4, 4), (0, 0)), mode="edge") for im in X])  # resized like torch
    np.testing.assert_allclose(onnx.predict_arrays(bigger), eager.predict_arrays(bigger), atol=1e-4)
    with pytest.raises(ExportError, match="exists"):
        export_onnx(path)


def test_an_export_of_another_bundle_is_never_used(tmp_path: Path) -> None:
    path, _ = tiny_bundle(tmp_path / "b")
    export_onnx(path)
    card = json.loads((path / "onnx.json").read_text())
    card["bundle_hash"] = "0" * 64
    (path / "onnx.json").write_text(json.dumps(card))
    b = load_bundle(path)
    assert Predictor(b, device="cpu").backend == "torch"
    with pytest.raises(ValueError, match="no ONNX export"):
        Predictor(b, device="cpu", backend="onnx")


def test_failed_parity_keeps_nothing(tmp_path: Path) -> None:
    path, _ = tiny_bundle(tmp_path / "b")
    with pytest.raises(ExportError, match="differs from torch"):
        export_onnx(path, tolerance=-1.0)
    assert sorted(p.name for p in path.iterdir()) == ["card.json", "weights.safetensors"]


def test_handcrafted_bundles_are_refused_with_the_reason(tmp_path: Path) -> None:
    path, _ = tiny_bundle(tmp_path / "h", "handcrafted")
    with pytest.raises(ExportError, match="deep single-task"):
        export_onnx(path)


def test_cli_export_then_predict_with_onnx(tmp_path: Path) -> None:
    path, X = tiny_bundle(tmp_path / "b")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    from PIL import Image

    for i, im in enumerate(X[:4]):
        Image.fromarray(im).save(imgs / f"{i}.png")
    r = runner.invoke(app, ["export", str(path), "--format", "onnx", "--out", str(tmp_path / "x")])
    assert r.exit_code == 0 and "parity" in r.output, r.output
    r = runner.invoke(app, ["export", str(path), "--format", "tflite"])
    assert r.exit_code == 1 and "only onnx" in r.output
    r = runner.invoke(app, ["export", str(path)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["predict", str(path), str(imgs), "-o", str(tmp_path / "p.csv"), "--backend", "onnx"]
    )
    assert r.exit_code == 0 and "onnx" in r.output, r.output
    assert len((tmp_path / "p.csv").read_text().strip().splitlines()) == 5
