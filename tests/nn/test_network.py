"""Running a network over uint8 arrays: the 8 views, their inverse, TTA averaging and the hooks."""

from __future__ import annotations

import numpy as np
import torch

from lablens.nn.network import dihedral, run_network, undo_dihedral

CPU = torch.device("cpu")
KW = dict(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), device=CPU, channels_last=False)


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class _TwoHeads(torch.nn.Module):
    """Logits and an image-shaped output (the input itself), like the multi-task network's residual."""

    def __init__(self) -> None:
        super().__init__()
        self.tiny = _Tiny()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.tiny(x), "residual": x.clone()}


def _images(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)


def test_dihedral_gives_eight_distinct_views_and_undo_inverts_each() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    views = {tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(views) == 8
    torch.testing.assert_close(dihedral(x, 0), x)
    for k in range(8):
        torch.testing.assert_close(undo_dihedral(dihedral(x, k), k), x)


def test_tta_averages_the_eight_views() -> None:
    torch.manual_seed(0)
    net = _Tiny().eval()
    images = _images()
    plain = run_network(net, images, **KW)["logits"]
    tta = run_network(net, images, tta=True, batch_size=2, **KW)["logits"]
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        expected = torch.stack([net(dihedral(x, k)) for k in range(8)]).mean(0).numpy()
        np.testing.assert_allclose(plain, net(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tta, expected, rtol=1e-5, atol=1e-6)


def test_image_outputs_turn_back_with_their_view_and_hooks_run_in_order() -> None:
    torch.manual_seed(0)
    images = _images(3)
    seen_rows: list[list[int]] = []

    def prepare(x: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        seen_rows.append(rows.tolist())
        return x * 0.5

    def collect(x: torch.Tensor, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**out, "prepared": x}

    out = run_network(
        _TwoHeads(), images, tta=True, prepare=prepare, collect=collect, indices=np.array([7, 8, 9]), **KW
    )
    assert seen_rows == [[7, 8, 9]]
    prepared = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 * 0.5
    np.testing.assert_allclose(out["prepared"], prepared.numpy(), rtol=1e-6)
    # every view of the residual was turned back before averaging: the mean is the (normalised) input again
    np.testing.assert_allclose(out["residual"], ((prepared - 0.5) / 0.25).numpy(), rtol=1e-5, atol=1e-5)
    assert out["logits"].shape == (3, 3)


def test_adaptive_tta_gives_eight_views_only_to_uncertain_rows() -> None:
    torch.manual_seed(0)
    net = _TwoHeads().eval()
    images = _images(12)
    single = run_network(net, images, **KW)
    full = run_network(net, images, tta=True, **KW)
    probs = torch.softmax(torch.from_numpy(single["logits"]), 1).topk(2, 1).values.numpy()
    margins = probs[:, 0] - probs[:, 1]
    cut = float(np.median(margins))
    out = run_network(net, images, tta=True, tta_margin=cut, batch_size=5, **KW)
    esc = margins < cut
    assert 0 < esc.sum() < len(images)
    np.testing.assert_array_equal(out["tta_views"], np.where(esc, 8, 1))
    for name in ("logits", "residual"):
        np.testing.assert_allclose(out[name][esc], full[name][esc], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out[name][~esc], single[name][~esc], rtol=1e-6, atol=1e-7)


def test_adaptive_tta_with_the_widest_margin_is_full_tta() -> None:
    torch.manual_seed(1)
    net = _Tiny().eval()
    images = _images(6)
    full = run_network(net, images, tta=True, **KW)["logits"]
    out = run_network(net, images, tta=True, tta_margin=1.0, **KW)
    np.testing.assert_array_equal(out["tta_views"], 8)
    np.testing.assert_allclose(out["logits"], full, rtol=1e-5, atol=1e-6)
