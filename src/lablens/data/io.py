"""Safe image decoding: every supported file becomes an ``H×W×3`` uint8 RGB array, or an ``ImageError``.

Formats: JPEG, PNG, BMP and TIFF (8/16/32-bit, 1–4 channels, planar or interleaved, palette, CMYK),
greyscale, RGBA, palette and CMYK images, EXIF orientation. Size is checked from the header *before*
pixels are decoded, so a decompression bomb is refused without allocating it.

16-bit (and 32-bit integer) images are mapped linearly to 8 bits over their full type range; float
images are mapped from [0, 1] when they fit in it, else from their own min–max.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SUPPORTED_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class ImageError(Exception):
    """An image lablens cannot use. ``kind`` is a short category, ``reason`` a sentence for people."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class DecodeLimits:
    """Guards applied before and after decoding.

    Attributes:
        max_pixels: refuse images with more pixels than this (decompression-bomb guard).
        min_side: refuse images whose shorter side is below this many pixels.
    """

    max_pixels: int = 60_000_000
    min_side: int = 16


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image with the facts validation needs."""

    pixels: np.ndarray  # H×W×3 uint8 RGB
    sha256: str
    source_mode: str  # e.g. "RGB", "I;16", "CMYK", "tiff:uint16:YXS"


def read_image(path: str | Path, limits: DecodeLimits | None = None) -> DecodedImage:
    """Read and decode one image file.

    Raises:
        ImageError: with ``kind`` one of ``empty``, ``unreadable``, ``not_image``, ``truncated``,
            ``corrupt``, ``too_large``, ``too_small``, ``unsupported``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError("unreadable", f"cannot read file: {exc.strerror or exc}") from exc
    return decode_bytes(data, limits or DecodeLimits())


def decode_bytes(data: bytes, limits: DecodeLimits) -> DecodedImage:
    """Decode image bytes (see :func:`read_image`)."""
    if len(data) == 0:
        raise ImageError("empty", "empty file (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()
    if data[:4] in _TIFF_MAGICS:
        try:
            pixels, mode = _decode_tiff(data, limits)
        except ImageError:
            raise
        except Exception:  # a codec tifffile lacks: let Pillow try before giving up
            pixels, mode = _decode_pillow(data, limits)
    else:
        pixels, mode = _decode_pillow(data, limits)
    return DecodedImage(pixels=pixels, sha256=digest, source_mode=mode)


def _check_size(width: int, height: int, limits: DecodeLimits) -> None:
    pixels = int(width) * int(height)
    if pixels > limits.max_pixels:
        raise ImageError(
            "too_large",
            f"too large to decode safely: {width}×{height} = {pixels:,} pixels exceeds the limit of "
            f"{limits.max_pixels:,} (decompression-bomb guard; raise data.max_pixels to allow it)",
        )
    if min(width, height) < limits.min_side:
        raise ImageError(
            "too_small", f"too small: {width}×{height} px (the shorter side must be ≥ {limits.min_side} px)"
        )


def _decode_pillow(data: bytes, limits: DecodeLimits) -> tuple[np.ndarray, str]:
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageError("not_image", "not a recognised image (JPEG, PNG, BMP or TIFF expected)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError("too_large", f"too large to decode safely ({exc})") from exc
    except _DECODE_ERRORS as exc:  # the header itself is cut off or damaged
        raise _damaged(exc) from exc
    with im:
        _check_size(*im.size, limits)
        mode = im.mode
        try:
            im.load()
            im = ImageOps.exif_transpose(im)
        except Image.DecompressionBombError as exc:
            raise ImageError("too_large", f"too large to decode safely ({exc})") from exc
        except _DECODE_ERRORS as exc:
            raise _damaged(exc) from exc
        return _pillow_to_rgb(im), mode


_DECODE_ERRORS = (OSError, EOFError, SyntaxError, ValueError, struct.error, zlib.error)


def _damaged(exc: BaseException) -> ImageError:
    msg = str(exc) or type(exc).__name__
    if "truncat" in msg.lower() or isinstance(exc, EOFError):
        return ImageError("truncated", f"truncated image data ({msg})")
    return ImageError("corrupt", f"corrupt image data ({msg})")


def _pillow_to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("RGB", "L", "P", "PA", "RGBA", "LA", "CMYK", "YCbCr", "1", "RGBX", "LAB", "HSV"):
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    # High bit depth greyscale or float modes: Pillow's convert() would clip, so scale ourselves.
    arr = np.asarray(im)
    return _to_uint8_rgb(arr[..., None] if arr.ndim == 2 else arr)


def _decode_tiff(data: bytes, limits: DecodeLimits) -> tuple[np.ndarray, str]:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        width, height = int(page.imagewidth), int(page.imagelength)
        _check_size(width, height, limits)
        arr = page.asarray()
        axes = page.axes
        photometric = int(page.photometric) if page.photometric is not None else -1
        colormap = page.colormap
    mode = f"tiff:{arr.dtype}:{axes}"
    # Bring samples (S) to the last axis and drop any other leading axes (first plane of a stack).
    if "S" in axes and axes.index("S") != len(axes) - 1:
        arr = np.moveaxis(arr, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    while arr.ndim > (3 if axes.endswith("S") else 2):
        arr = arr[0]
        axes = axes[1:]
    if arr.ndim == 2:
        arr = arr[..., None]
    if photometric == 3 and colormap is not None and arr.shape[-1] == 1:  # palette
        cmap = np.asarray(colormap, dtype=np.float64)
        rgb = cmap[:, arr[..., 0].astype(np.int64)].transpose(1, 2, 0)
        return np.clip(rgb / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8), mode + ":palette"
    if photometric == 5 and arr.shape[-1] >= 4:  # CMYK (separated)
        cmyk = _to_uint8_rgb_channels(arr[..., :4])
        rgb = np.asarray(Image.fromarray(cmyk, mode="CMYK").convert("RGB"), dtype=np.uint8)
        return rgb.copy(), mode + ":cmyk"
    if photometric == 0:  # min-is-white greyscale
        arr = _invert(arr)
    return _to_uint8_rgb(arr), mode


def _invert(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind in "ui":
        return np.iinfo(arr.dtype).max - arr
    return arr.max() - arr


def _to_uint8_rgb_channels(arr: np.ndarray) -> np.ndarray:
    """Scale any dtype to uint8 keeping the channel count."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if arr.dtype.kind in "ui":
        info = np.iinfo(arr.dtype)
        lo = 0 if arr.dtype.kind == "u" else info.min
        scaled = (arr.astype(np.float64) - lo) / float(info.max - lo) * 255.0
        return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
    if arr.dtype.kind == "f":
        arr = np.nan_to_num(arr.astype(np.float64))
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0.0 and hi <= 1.0:
            lo, hi = 0.0, 1.0
        scaled = (arr - lo) / (hi - lo if hi > lo else 1.0) * 255.0
        return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
    raise ImageError("unsupported", f"unsupported pixel type {arr.dtype}")


def _to_uint8_rgb(arr: np.ndarray) -> np.ndarray:
    """``H×W×C`` (C = 1..4, any dtype) → ``H×W×3`` uint8. 2 channels: the first is used as grey;
    4 channels: the fourth (alpha or an extra channel) is dropped."""
    if arr.ndim != 3 or arr.shape[-1] < 1:
        raise ImageError("unsupported", f"unsupported image layout with shape {arr.shape}")
    channels = arr.shape[-1]
    if channels > 4:
        raise ImageError("unsupported", f"unsupported image with {channels} channels (1–4 expected)")
    arr8 = _to_uint8_rgb_channels(arr)
    arr8 = np.repeat(arr8[..., :1], 3, axis=-1) if channels in (1, 2) else arr8[..., :3]
    return np.ascontiguousarray(arr8)


def walk_files(root: str | Path) -> Iterator[Path]:
    """Every file below ``root`` in sorted order; hidden files and folders (``.name``) are skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def safe_display_name(path: str | Path) -> str:
    """A printable version of a path whose bytes may not be valid UTF-8."""
    raw = str(path).encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "replace")


def is_valid_utf8_name(path: str | Path) -> bool:
    """False when a file name holds bytes that are not UTF-8 (Python keeps them as surrogates)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
