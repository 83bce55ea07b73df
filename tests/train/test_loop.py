from __future__ import annotations

import itertools

import numpy as np
import torch

from lablens.train.loop import LoopSettings, _lr_at, _mix, dihedral, fit_network, predict_logits


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_dihedral_gives_eight_distinct_views() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    views = {tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(views) == 8
    torch.testing.assert_close(dihedral(x, 0), x)


def test_tta_averages_the_eight_views() -> None:
    torch.manual_seed(0)
    net = _Tiny().eval()
    images = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    kw = dict(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), device=torch.device("cpu"), channels_last=False)
    plain = predict_logits(net, images, **kw)
    tta = predict_logits(net, images, tta=True, **kw)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        expected = torch.stack([net(dihedral(x, k)) for k in range(8)]).mean(0).numpy()
        np.testing.assert_allclose(plain, net(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tta, expected, rtol=1e-5, atol=1e-6)


def test_lr_schedule_warmup_then_cosine() -> None:
    lrs = [_lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == 0.1 and lrs[9] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert 0.01 <= lrs[-1] < 0.02


def test_seed_mixing_is_stable_and_distinct() -> None:
    assert _mix(0, 1) == _mix(0, 1)
    assert len({_mix(0, e) for e in range(100)}) == 100


def test_fit_network_learns_and_keeps_best() -> None:
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    images = np.zeros((60, 8, 8, 3), np.uint8)
    for i, c in enumerate(y):
        images[i, :, :, c] = 200
        images[i] += rng.integers(0, 40, (8, 8, 3), dtype=np.uint8)
    torch.manual_seed(0)
    net = _Tiny()
    settings = LoopSettings(
        epochs=6,
        batch_size=10,
        lr=5e-3,
        augment=None,
        device="cpu",
        channels_last=False,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        patience=None,
    )
    result = fit_network(net, images[:45], y[:45], images[45:], y[45:], n_classes=3, settings=settings)
    assert len(result.history) == 6
    assert result.history[result.best_epoch - 1]["val_accuracy"] == max(
        h["val_accuracy"] for h in result.history
    )
    assert result.history[-1]["val_accuracy"] == 1.0
