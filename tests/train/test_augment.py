from __future__ import annotations

import torch

from lablens.config import AugmentConfig
from lablens.train.augment import AugmentParams, apply_params, gaussian_blur_per_sample, sample_params


def _batch(n: int = 6, size: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, size, size, generator=g)


def _identity(n: int) -> AugmentParams:
    return AugmentParams(
        flip_h=torch.zeros(n, dtype=torch.bool),
        flip_v=torch.zeros(n, dtype=torch.bool),
        rot_k=torch.zeros(n, dtype=torch.long),
        angle=torch.zeros(n),
        zoom=torch.ones(n),
        shift=torch.zeros(n, 2),
        brightness=torch.ones(n),
        contrast=torch.ones(n),
        saturation=torch.ones(n),
        gain=torch.ones(n, 3),
        blur_sigma=torch.zeros(n),
    )


def test_same_seed_same_params_and_output() -> None:
    cfg = AugmentConfig()
    x = _batch()
    p1 = sample_params(6, cfg, torch.Generator().manual_seed(5))
    p2 = sample_params(6, cfg, torch.Generator().manual_seed(5))
    p3 = sample_params(6, cfg, torch.Generator().manual_seed(6))
    torch.testing.assert_close(apply_params(x.clone(), p1), apply_params(x.clone(), p2))
    assert not torch.equal(apply_params(x.clone(), p1), apply_params(x.clone(), p3))


def test_identity_params_leave_images_unchanged() -> None:
    x = _batch()
    torch.testing.assert_close(apply_params(x.clone(), _identity(6)), x)


def test_flip_and_rotation_are_per_sample() -> None:
    x = _batch(3)
    p = _identity(3)
    p.flip_h[0] = True
    p.rot_k[2] = 1
    out = apply_params(x.clone(), p)
    torch.testing.assert_close(out[0], x[0].flip(-1))
    torch.testing.assert_close(out[1], x[1])
    torch.testing.assert_close(out[2], torch.rot90(x[2], 1, dims=(-2, -1)))


def test_disabled_geometry_in_config() -> None:
    cfg = AugmentConfig(flips=False, rot90=False, rotate=0, scale=0, translate=0)
    p = sample_params(64, cfg, torch.Generator().manual_seed(0))
    assert not p.flip_h.any() and not p.flip_v.any() and not p.rot_k.any()
    assert not p.angle.any() and (p.zoom == 1).all() and not p.shift.any()


def test_affine_rotation_by_90_matches_rot90() -> None:
    x = _batch(2, 16)
    p = _identity(2)
    p.angle[1] = 90.0
    out = apply_params(x.clone(), p)
    torch.testing.assert_close(out[0], x[0])
    # a 90° free rotation lands on the pixel grid: it equals the exact rotation (either direction convention)
    candidates = [torch.rot90(x[1], k, dims=(-2, -1)) for k in (1, 3)]
    assert any(torch.allclose(out[1], c, atol=1e-5) for c in candidates)


def test_zoom_in_keeps_centre() -> None:
    x = torch.zeros(1, 3, 21, 21)
    x[:, :, 10, 10] = 1.0
    p = _identity(1)
    p.zoom[0] = 1.1
    out = apply_params(x.clone(), p)
    assert out[0, 0].argmax().item() == 10 * 21 + 10


def test_jitter_ranges_respected() -> None:
    cfg = AugmentConfig(brightness=0.1, contrast=0.2, channel_gain=0.03, blur_prob=0.5, blur_sigma_max=1.0)
    p = sample_params(2000, cfg, torch.Generator().manual_seed(1))
    assert p.brightness.min() >= 0.9 and p.brightness.max() <= 1.1
    assert p.contrast.min() >= 0.8 and p.contrast.max() <= 1.2
    assert p.gain.min() >= 0.97 and p.gain.max() <= 1.03
    blurred = (p.blur_sigma > 0).float().mean().item()
    assert 0.45 < blurred < 0.55 and p.blur_sigma.max() <= 1.0


def test_blur_matches_reference_and_sigma_zero_is_identity() -> None:
    from scipy.ndimage import gaussian_filter

    x = _batch(2, 16)
    out = gaussian_blur_per_sample(x, torch.tensor([0.0, 1.2]), radius=4)
    torch.testing.assert_close(out[0], x[0])
    ref = torch.stack(
        [
            torch.from_numpy(gaussian_filter(x[1, c].numpy(), 1.2, mode="mirror", truncate=4 / 1.2))
            for c in range(3)
        ]
    )
    torch.testing.assert_close(out[1], ref, atol=1e-5, rtol=1e-4)


def test_output_stays_in_unit_range() -> None:
    cfg = AugmentConfig(brightness=0.5, contrast=0.5, saturation=0.5)
    out = apply_params(_batch(32), sample_params(32, cfg, torch.Generator().manual_seed(3)))
    assert out.min() >= 0 and out.max() <= 1
