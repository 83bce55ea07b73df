"""ONNX export: parity with torch, the automatic ONNX Runtime predictor on CPU, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lablens.cli import app
from lablens.infer.bundle import load_bundle
from lablens.infer.onnx_export import ExportError, _PixelsToLogits, dihedral_onnx, export_onnx
from lablens.infer.predictor import Predictor
from lablens.nn.network import dihedral
from lablens.nn.tta import TtaPolicy

from conftest import tiny_bundle

runner = CliRunner()


def test_onnx_rotations_are_torch_rotations() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    for k in range(8):
        assert torch.equal(dihedral_onnx(x, k), dihedral(x, k)), k


@pytest.mark.parametrize(
    ("model", "tta", "margin", "policy"),
    [
        ("test_resnet", False, None, "off"),
        ("efficientnet_lite0", True, None, "full"),
        ("test_resnet", True, 0.5, "adaptive"),
    ],
)
def test_export_matches_torch_and_is_used_on_cpu(
    tmp_path: Path, model: str, tta: bool, margin: float | None, policy: str
) -> None:
    path, X = tiny_bundle(tmp_path / "b", model, temperature=1.3, tta=tta, tta_margin=margin)
    res = export_onnx(path)
    card = json.loads((path / "onnx.json").read_text())
    assert res.path == path / "model.onnx" and card["tta"]["policy"] == policy and card["graph_views"] == 1
    assert card["parity"]["max_abs_prob_diff"] <= 1e-4 and card["bundle_hash"] == load_bundle(path).hash
    b = load_bundle(path)
    onnx, eager = Predictor(b, device="cpu"), Predictor(b, device="cpu", backend="torch")
    assert onnx.backend == "onnx" and eager.backend == "torch"
    np.testing.assert_allclose(onnx.predict_arrays(X), eager.predict_arrays(X), atol=1e-4)
    bigger = np.stack([np.pad(im, ((4, 4), (4, 4), (0, 0)), mode="edge") for im in X])  # resized like torch
    np.testing.assert_allclose(onnx.predict_arrays(bigger), eager.predict_arrays(bigger), atol=1e-4)
    np.testing.assert_array_equal(onnx.logits_and_views(X)[1], eager.logits_and_views(X)[1])
    with pytest.raises(ExportError, match="exists"):
        export_onnx(path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_an_export_with_the_views_inside_its_graph_is_used_as_it_is(tmp_path: Path) -> None:
    """lablens.onnx/1 exports averaged the 8 views inside the graph: the runner must not add views."""
    path, X = tiny_bundle(tmp_path / "b", tta=True, tta_margin=None)
    export_onnx(path)
    b = load_bundle(path)
    wrapper = _PixelsToLogits(b.estimator.network_, b.estimator.mean_, b.estimator.std_, views=8).eval()
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (torch.from_numpy(X[:2]),),
            str(path / "model.onnx"),
            input_names=["images"],
            dynamic_axes={"images": {0: "batch"}},
            dynamo=False,
        )
    card = json.loads((path / "onnx.json").read_text())
    card.pop("graph_views")
    (path / "onnx.json").write_text(json.dumps({**card, "format": "lablens.onnx/1", "tta": True}))
    onnx, eager = Predictor(b, device="cpu"), Predictor(b, device="cpu", backend="torch")
    assert onnx.backend == "onnx" and onnx.policy.name == "full"
    logits, views = onnx.logits_and_views(X)
    np.testing.assert_array_equal(views, 8)
    np.testing.assert_allclose(logits, eager.logits(X), atol=1e-4)


def test_a_tta_override_changes_the_views_and_is_refused_where_it_does_not_apply(tmp_path: Path) -> None:
    path, X = tiny_bundle(tmp_path / "b", tta=True, tta_margin=None)
    b = load_bundle(path)
    assert Predictor(b, device="cpu", backend="torch").policy.name == "full"
    single = Predictor(load_bundle(path), device="cpu", backend="torch", tta=TtaPolicy())
    np.testing.assert_array_equal(single.logits_and_views(X)[1], 1)
    hand, _ = tiny_bundle(tmp_path / "h", "handcrafted")
    with pytest.raises(ValueError, match="no test-time augmentation"):
        Predictor(load_bundle(hand), tta=TtaPolicy(8))


def test_an_export_of_another_bundle_is_never_used(tmp_path: Path) -> None:
    path, _ = tiny_bundle(tmp_path / "b")
    export_onnx(path)
    card = json.loads((path / "onnx.json").read_text())
    card["bundle_hash"] = "0" * 64
    (path / "onnx.json").write_text(json.dumps(card))
    b = load_bundle(path)
    auto = Predictor.prepared(
        b, print, device="cpu"
    )  # the bundle's own export is refused; the cache gets one
    assert auto.backend == "onnx" and path not in auto._onnx.path.parents
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


def test_a_bundle_without_an_export_gets_one_in_the_cache_and_is_left_untouched(tmp_path: Path) -> None:
    path, X = tiny_bundle(tmp_path / "b", tta=True)
    b = load_bundle(path)
    assert Predictor(b, device="cpu").backend == "torch"  # inference alone never exports
    notes: list[str] = []
    auto, eager = (
        Predictor.prepared(b, notes.append, device="cpu"),
        Predictor(b, device="cpu", backend="torch"),
    )
    assert notes == []
    assert auto.backend == "onnx" and sorted(p.name for p in path.iterdir()) == [
        "card.json",
        "weights.safetensors",
    ]
    assert b.hash[:32] in str(auto._onnx.path)
    np.testing.assert_allclose(auto.predict_arrays(X), eager.predict_arrays(X), atol=1e-4)
    assert Predictor(load_bundle(path), device="cpu")._onnx.path == auto._onnx.path  # made once, then found
    hand, _ = tiny_bundle(tmp_path / "h", "handcrafted")
    assert (
        Predictor.prepared(load_bundle(hand), notes.append, device="cpu").backend == "torch" and notes == []
    )


def test_an_export_that_fails_is_said_and_torch_predicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lablens.infer.onnx_export as onnx_export

    path, _ = tiny_bundle(tmp_path / "b")

    def parity_fails(*args: object, **kwargs: object) -> None:
        raise ExportError("ONNX Runtime differs from torch by 1.00e-01 in probability")

    monkeypatch.setattr(onnx_export, "export_onnx", parity_fails)
    notes: list[str] = []
    p = Predictor.prepared(load_bundle(path), notes.append, device="cpu")
    assert p.backend == "torch" and len(notes) == 1
    assert "ONNX Runtime not used for bundle" in notes[0] and "differs from torch" in notes[0]
