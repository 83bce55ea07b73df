from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from lablens.data.io import DecodeLimits, ImageError, decode_bytes, read_image

from corpus import bomb_png

LIMITS = DecodeLimits()


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _gradient(h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 77)], -1).astype(np.uint8)


def test_rgb_png_roundtrip() -> None:
    arr = _gradient()
    out = decode_bytes(_png_bytes(Image.fromarray(arr)), LIMITS)
    np.testing.assert_array_equal(out.pixels, arr)
    assert out.pixels.dtype == np.uint8 and out.source_mode == "RGB"


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1"])
def test_pillow_modes_become_rgb(mode: str) -> None:
    img = Image.fromarray(_gradient()).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    out = decode_bytes(buf.getvalue(), LIMITS)
    assert out.pixels.shape == (24, 32, 3) and out.pixels.dtype == np.uint8


def test_greyscale_replicated_to_three_channels() -> None:
    grey = _gradient()[:, :, 0]
    out = decode_bytes(_png_bytes(Image.fromarray(grey)), LIMITS)
    for c in range(3):
        np.testing.assert_array_equal(out.pixels[:, :, c], grey)


def test_rgba_alpha_dropped_not_composited() -> None:
    rgba = np.dstack([_gradient(), np.zeros((24, 32), np.uint8)])  # fully transparent
    out = decode_bytes(_png_bytes(Image.fromarray(rgba, "RGBA")), LIMITS)
    np.testing.assert_array_equal(out.pixels, rgba[:, :, :3])


def test_exif_orientation_applied() -> None:
    arr = _gradient(20, 40)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif, quality=95)
    out = decode_bytes(buf.getvalue(), LIMITS)
    assert out.pixels.shape == (40, 20, 3)


def test_16bit_tiff_scaled_over_full_range() -> None:
    arr = np.array([[0, 65535], [257 * 100, 257 * 200]], dtype=np.uint16)
    arr = np.kron(arr, np.ones((10, 10), np.uint16))
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr)
    out = decode_bytes(buf.getvalue(), LIMITS)
    assert out.pixels.shape == (20, 20, 3)
    assert out.pixels[0, 0, 0] == 0 and out.pixels[0, 19, 0] == 255
    assert out.pixels[19, 0, 1] == 100 and out.pixels[19, 19, 2] == 200


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_channel_counts(channels: int, dtype: type) -> None:
    rng = np.random.default_rng(channels)
    top = 255 if dtype == np.uint8 else 65535
    arr = rng.integers(0, top, (18, 22, channels), endpoint=True).astype(dtype)
    buf = io.BytesIO()
    photometric = "minisblack" if channels in (1, 2) else "rgb"
    tifffile.imwrite(
        buf,
        arr if channels > 1 else arr[..., 0],
        photometric=photometric,
        extrasamples=[0] if channels == 4 else None,
        planarconfig="contig",
    )
    out = decode_bytes(buf.getvalue(), LIMITS)
    assert out.pixels.shape == (18, 22, 3)
    scale = 1 if dtype == np.uint8 else 257
    first = np.round(arr[..., 0] / scale).astype(np.uint8)
    np.testing.assert_array_equal(out.pixels[..., 0], first)


def test_planar_tiff() -> None:
    arr = np.stack([np.full((16, 20), v, np.uint8) for v in (10, 20, 30)])  # C×H×W
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, photometric="rgb", planarconfig="separate")
    out = decode_bytes(buf.getvalue(), LIMITS)
    assert out.pixels.shape == (16, 20, 3)
    assert tuple(out.pixels[0, 0]) == (10, 20, 30)


def test_bmp() -> None:
    buf = io.BytesIO()
    Image.fromarray(_gradient()).save(buf, format="BMP")
    np.testing.assert_array_equal(decode_bytes(buf.getvalue(), LIMITS).pixels, _gradient())


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "empty"),
        (b"this is a text file, not an image\n", "not_image"),
        (bomb_png(), "too_large"),
    ],
)
def test_bad_bytes(data: bytes, kind: str) -> None:
    with pytest.raises(ImageError) as err:
        decode_bytes(data, LIMITS)
    assert err.value.kind == kind


def test_truncated_jpeg() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    with pytest.raises(ImageError) as err:
        decode_bytes(data[: len(data) // 2], LIMITS)
    assert err.value.kind == "truncated"
    assert "truncated" in err.value.reason


def test_too_small() -> None:
    with pytest.raises(ImageError) as err:
        decode_bytes(_png_bytes(Image.new("RGB", (8, 40))), LIMITS)
    assert err.value.kind == "too_small" and "8×40" in err.value.reason


def test_bomb_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    bomb = bomb_png()
    monkeypatch.setattr(Image.Image, "load", lambda self: calls.append(1))
    with pytest.raises(ImageError):
        decode_bytes(bomb, LIMITS)
    assert calls == []


def test_read_image_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as err:
        read_image(tmp_path / "missing.png")
    assert err.value.kind == "unreadable"
