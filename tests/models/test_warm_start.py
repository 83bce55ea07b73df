"""Warm start (``model.init``): head rows mapped by class name, backbones copied whole, mismatches refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lablens.errors import SettingError
from lablens.infer.bundle import load_bundle
from lablens.models.registry import create_estimator
from lablens.models.warm_start import read_init_bundle, warm_start
from lablens.nn.weights import build_network
from lablens.train.context import FitContext

from conftest import shape_image, tiny_bundle


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deep bundle of classes disc, ring, square (test_resnet at 32 px)."""
    path, _ = tiny_bundle(tmp_path_factory.mktemp("src") / "bundle")
    return path


def _fit_data(labels: list[str], n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = np.array(labels * n)
    return np.stack([shape_image(c if c != "cross" else "ring", rng, 32) for c in y]), y


def test_known_classes_keep_their_head_rows_bit_for_bit_and_new_ones_stay_fresh(source: Path) -> None:
    src = read_init_bundle(source)
    est = create_estimator("test_resnet", image_size=32, init=str(source))
    classes = ["cross", "disc", "square"]  # ring dropped, cross new
    torch.manual_seed(0)
    net, _ = build_network("test_resnet", "scratch", len(classes))
    fresh_row = est.head_of(net).weight[0].detach().clone()
    record = warm_start(net, est, classes, src, 32)
    head, src_head = est.head_of(net), src.estimator.head_of(src.estimator.network_)
    assert torch.equal(head.weight[1], src_head.weight[0]) and torch.equal(head.bias[1], src_head.bias[0])
    assert torch.equal(head.weight[2], src_head.weight[2]) and torch.equal(head.bias[2], src_head.bias[2])
    assert torch.equal(head.weight[0], fresh_row)
    backbone = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    src_state = src.estimator.network_.state_dict()
    assert all(torch.equal(v, src_state[k]) for k, v in backbone.items())
    assert (record["kept"], record["new"], record["dropped"]) == (["disc", "square"], ["cross"], ["ring"])
    assert record["bundle_hash"] == load_bundle(source).hash and record["fresh"] == []


def test_a_warm_started_fit_records_where_it_began_in_its_bundle(source: Path, tmp_path: Path) -> None:
    from lablens.infer.bundle import save_bundle

    X, y = _fit_data(["disc", "ring", "cross"])
    est = create_estimator(
        "test_resnet", image_size=32, init=str(source), epochs=1, batch_size=4, augment=None
    ).fit(X, y, context=FitContext(device="cpu"))
    assert est.weights_source_.startswith("bundle:") and est.mean_ == read_init_bundle(source).estimator.mean_
    saved = save_bundle(tmp_path / "b", est, estimator_name="test_resnet", image_size=32, resize_mode="pad")
    init = load_bundle(saved.path).card["init"]
    assert (init["kept"], init["new"], init["dropped"]) == (["disc", "ring"], ["cross"], ["square"])


def test_frozen_stages_keep_the_bundles_stem_and_first_stage_while_the_rest_trains(source: Path) -> None:
    X, y = _fit_data(["disc", "ring", "square"])
    est = create_estimator(
        "test_resnet", image_size=32, init=str(source), epochs=2, batch_size=4, augment=None, frozen_stages=1,
        ema=False,
    ).fit(X, y, context=FitContext(device="cpu"))  # fmt: skip
    start, after = read_init_bundle(source).estimator.network_.state_dict(), est.network_.state_dict()
    weights = [k for k in after if k.endswith("weight") and "bn" not in k]
    frozen = [k for k in weights if k.startswith(("conv1", "layer1"))]
    trained = [k for k in weights if k.startswith(("layer2", "fc"))]
    assert frozen and trained and est.frozen_stages_ == 1
    assert all(torch.equal(after[k], start[k]) for k in frozen)
    assert not any(torch.equal(after[k], start[k]) for k in trained)


def test_the_encoder_of_a_multiple_instance_model_starts_from_a_plain_networks_bundle(source: Path) -> None:
    src = read_init_bundle(source)
    est = create_estimator("mil", model_name="test_resnet", image_size=32, init=str(source))
    net, _ = est._build(est.typed_params(), 2, "scratch")
    record = warm_start(net, est, ["disc", "ring"], src, 32)
    src_state = src.estimator.network_.state_dict()
    encoder = {k[len("encoder.") :]: v for k, v in net.state_dict().items() if k.startswith("encoder.")}
    assert encoder and all(torch.equal(v, src_state[k]) for k, v in encoder.items())
    assert torch.equal(net.classifier.weight, src_state["fc.weight"][:2])
    assert record["fresh"] == ["attention.u", "attention.v", "attention.w"]


def test_another_architecture_or_input_size_or_both_weights_are_refused_naming_both(source: Path) -> None:
    X, y = _fit_data(["disc", "ring"])
    cases = {
        "resnet18": ("the bundle is test_resnet, this model resnet18", {}),
        "test_resnet": ("the bundle reads 32 px images, this model 48 px", {"image_size": 48}),
    }
    for model, (message, extra) in cases.items():
        params = {"image_size": 32, "init": str(source), "epochs": 1, "batch_size": 4, **extra}
        with pytest.raises(SettingError, match=message):
            create_estimator(model, **params).fit(X, y, context=FitContext(device="cpu"))
    with pytest.raises(SettingError, match=r"model\.weights 'imagenet'"):
        create_estimator("test_resnet", image_size=32, init=str(source), weights="imagenet").fit(
            X, y, context=FitContext(device="cpu")
        )


def test_a_multitask_network_starts_from_a_plain_networks_backbone_and_head(tmp_path: Path) -> None:
    source, _ = tiny_bundle(tmp_path / "src", model="test_efficientnet")
    src = read_init_bundle(source)
    est = create_estimator("multitask", model_name="test_efficientnet", image_size=32, init=str(source))
    net, _ = est._build(est.typed_params(), 3, "scratch")
    record = warm_start(net, est, ["disc", "ring", "square"], src, 32)
    src_state = src.estimator.network_.state_dict()
    backbone = {k[len("backbone.") :]: v for k, v in net.state_dict().items() if k.startswith("backbone.")}
    assert backbone.keys() == src_state.keys() and all(
        torch.equal(v, src_state[k]) for k, v in backbone.items()
    )
    assert record["kept"] == ["disc", "ring", "square"] and record["fresh"]  # the blur heads start fresh
    assert all(part.startswith(("quality_head", "decoder")) for part in record["fresh"])
