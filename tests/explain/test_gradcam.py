"""Grad-CAM: exact on a hand-built network, automatic target layer on timm CNNs, bundles end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lablens.explain.gradcam import GradCam, find_target_layer, overlay
from lablens.infer.bundle import load_bundle
from lablens.models.registry import create_estimator
from lablens.nn.weights import build_network

from conftest import tiny_bundle


def _colour_net() -> torch.nn.Module:
    """Class 0 = how red the image is, class 1 = how green (1×1 conv picks the channel, then ReLU and pooling)."""
    conv = torch.nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = 1.0
        conv.weight[1, 1] = 1.0
    fc = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.eye(2))
    return torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), fc)


def test_heatmap_marks_the_evidence_for_each_class() -> None:
    img = np.zeros((1, 16, 16, 3), np.uint8)
    img[0, 2:6, 2:6, 0] = 255  # a red patch top left
    img[0, 10:14, 10:14, 1] = 255  # a green patch bottom right
    cam = GradCam(_colour_net(), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 16)
    assert cam.layer_name == "1"  # the ReLU: last layer with a spatial output
    red = cam(img, np.array([0]))
    green = cam(img, np.array([1]))
    assert red.heatmaps.shape == (1, 16, 16) and red.heatmaps.max() == pytest.approx(1.0)
    assert red.heatmaps[0, 2:6, 2:6].min() == pytest.approx(1.0) and red.heatmaps[0, 10:14, 10:14].max() == 0
    assert (
        green.heatmaps[0, 10:14, 10:14].min() == pytest.approx(1.0) and green.heatmaps[0, 2:6, 2:6].max() == 0
    )


def test_target_layer_is_found_in_timm_cnns() -> None:
    for arch in ("test_resnet", "efficientnet_lite0"):
        net, _ = build_network(arch, "scratch", 3, 0.0)
        name, module = find_target_layer(net, 64)
        shapes: list[torch.Size] = []
        module.register_forward_hook(lambda _m, _i, o, shapes=shapes: shapes.append(o.shape))
        net.eval()(torch.zeros(1, 3, 64, 64))
        assert len(shapes[0]) == 4 and min(shapes[0][-2:]) > 1, (arch, name)
    with pytest.raises(ValueError, match="spatial"):
        find_target_layer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)), 2)


def test_bundle_gradcam_and_overlay(tmp_path: Path) -> None:
    path, X = tiny_bundle(tmp_path / "b")
    b = load_bundle(path)
    res = GradCam.for_bundle(b)(X[:3])
    assert res.heatmaps.shape == (3, 32, 32) and res.heatmaps.min() >= 0 and res.heatmaps.max() <= 1
    assert list(res.classes) == list(b.estimator.predict_proba(X[:3]).argmax(1))
    ov = overlay(X[0], res.heatmaps[0])
    assert ov.shape == X[0].shape and ov.dtype == np.uint8
    with pytest.raises(ValueError, match="deep"):
        GradCam.for_bundle(load_bundle(tiny_bundle(tmp_path / "h", "handcrafted")[0]))


def test_report_error_gallery_shows_gradcam_for_deep_estimators(tmp_path: Path) -> None:
    from lablens.explain.gradcam import explainer_for
    from lablens.report.html import render_report

    path, X = tiny_bundle(tmp_path / "b")
    explain = explainer_for(load_bundle(path).estimator)
    assert explain is not None and explain(X[:2], np.array([0, 2])).shape == X[:2].shape
    assert explainer_for(create_estimator("handcrafted", image_size=32)) is None
    proba = np.tile([0.1, 0.1, 0.8], (12, 1))  # everything called "square": 8 errors
    truth = np.array([0, 1, 2] * 4)
    metrics = {"schema": "lablens.metrics/1", "n": 12}
    ids = [f"img{i}.png" for i in range(12)]
    kwargs = {"y_true": truth, "proba": proba, "classes": ["disc", "ring", "square"], "ids": ids, "images": X}
    with_cam = render_report(metrics, **kwargs, explain=explain)
    assert with_cam.count("Grad-CAM of") == 8
    assert "Grad-CAM of" not in render_report(metrics, **kwargs)
