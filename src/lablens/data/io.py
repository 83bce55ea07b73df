"""Safe image decoding: every supported file becomes an ``H×W×3`` uint8 RGB array, or an ``ImageError``.

Formats: JPEG, PNG, BMP and TIFF (8/16/32-bit, 1–4 channels, planar or interleaved, palette, CMYK),
greyscale, RGBA, palette and CMYK images, EXIF orientation. Size is checked from the header *before*
pixels are decoded, so a decompression bomb is refused without allocating it.

16-bit (and 32-bit integer) images are mapped linearly to 8 bits over their full type range; float
images are mapped from [0, 1] when they fit in it, else from their own min–max. The mapping runs over blocks of
rows into the 8-bit result, so a large float image costs its own size once, not several full-size copies.
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

from lablens.errors import LablensError

SUPPORTED_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class ImageError(LablensError):
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
        max_bytes: refuse images whose decoded size (pixels × channels × bytes per sample, from the header)
            exceeds this; None: no limit beyond ``max_pixels``.
    """

    max_pixels: int = 60_000_000
    min_side: int = 16
    max_bytes: int | None = None


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


def probe_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the header alone (nothing is decoded); None when the header cannot be read."""
    try:
        if data[:4] in _TIFF_MAGICS:
            import tifffile

            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                page = tif.pages[0]
                return int(page.imagewidth), int(page.imagelength)
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:  # unreadable headers are reported by the decoder, with their reason
        return None


_MODE_BYTES = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4, "1": 1}


def _pillow_bytes(im: Image.Image) -> int:
    """Decoded bytes of a Pillow image: its pixels times its bands times the bytes of one sample."""
    per_band = _MODE_BYTES.get(im.mode, 1)
    return im.size[0] * im.size[1] * len(im.getbands()) * per_band


def _check_size(width: int, height: int, limits: DecodeLimits, decoded_bytes: int | None = None) -> None:
    if limits.max_bytes is not None and decoded_bytes is not None and decoded_bytes > limits.max_bytes:
        raise ImageError(
            "too_large",
            f"too large to decode safely: {width}×{height} decodes to {decoded_bytes:,} bytes, over the limit of "
            f"{limits.max_bytes:,}",
        )
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
        _check_size(*im.size, limits, _pillow_bytes(im))
        mode = im.mode
        try:
            im.load()
            ImageOps.exif_transpose(im, in_place=True)  # no copy of the whole image
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
    """RGB uint8 pixels of a loaded Pillow image, holding at most the image and one copy at a time."""
    mode = im.mode
    if mode in ("RGB", "L", "P", "PA", "RGBA", "LA", "CMYK", "YCbCr", "1", "RGBX", "LAB", "HSV"):
        rgb = im if mode == "RGB" else im.convert("RGB")
        width, height = rgb.size
        raw = rgb.tobytes()
        rgb.close()  # frees Pillow's copy (4 bytes a pixel) before numpy makes its own
        im.close()
        return np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3).copy()
    # High bit depth greyscale or float modes: Pillow's convert() would clip, so scale ourselves.
    arr = np.asarray(im)
    return _to_uint8_rgb(arr[..., None] if arr.ndim == 2 else arr)


def _decode_tiff(data: bytes, limits: DecodeLimits) -> tuple[np.ndarray, str]:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        width, height = int(page.imagewidth), int(page.imagelength)
        decoded = int(np.prod(page.shape)) * np.dtype(page.dtype).itemsize if page.dtype is not None else None
        _check_size(width, height, limits, decoded)
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


ROWS_PER_BLOCK = 256  # rows converted at a time: the float intermediates stay a few MB whatever the image


def _finite_range(arr: np.ndarray) -> tuple[float, float]:
    """Smallest and largest finite value, block by block ((0, 1) when there is none)."""
    lo, hi = np.inf, -np.inf
    for start in range(0, arr.shape[0], ROWS_PER_BLOCK):
        block = arr[start : start + ROWS_PER_BLOCK]
        finite = block[np.isfinite(block)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return (lo, hi) if lo <= hi else (0.0, 1.0)


def _to_uint8_rgb_channels(arr: np.ndarray) -> np.ndarray:
    """Scale any dtype to uint8 keeping the channel count, block by block into the result (no full-size copy)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if arr.dtype.kind in "ui":
        info = np.iinfo(arr.dtype)
        lo, hi = (0 if arr.dtype.kind == "u" else info.min), info.max
    elif arr.dtype.kind == "f":
        lo, hi = _finite_range(arr)
        if lo >= 0.0 and hi <= 1.0:
            lo, hi = 0.0, 1.0
    else:
        raise ImageError("unsupported", f"unsupported pixel type {arr.dtype}")
    scale = 255.0 / (hi - lo if hi > lo else 1.0)
    out = np.empty(arr.shape, dtype=np.uint8)
    for start in range(0, arr.shape[0], ROWS_PER_BLOCK):
        block = arr[start : start + ROWS_PER_BLOCK].astype(np.float64)
        if block.dtype.kind == "f":
            np.nan_to_num(block, copy=False, nan=lo, posinf=hi, neginf=lo)
        block -= lo
        block *= scale
        block += 0.5
        np.clip(block, 0, 255, out=block)
        out[start : start + ROWS_PER_BLOCK] = block
    return out


def _to_uint8_rgb(arr: np.ndarray) -> np.ndarray:
    """``H×W×C`` (C = 1..4, any dtype) → ``H×W×3`` uint8. 2 channels: the first is used as grey;
    4 channels: the fourth (alpha or an extra channel) is dropped."""
    if arr.ndim != 3 or arr.shape[-1] < 1:
        raise ImageError("unsupported", f"unsupported image layout with shape {arr.shape}")
    channels = arr.shape[-1]
    if channels > 4:
        raise ImageError("unsupported", f"unsupported image with {channels} channels (1–4 expected)")
    arr8 = _to_uint8_rgb_channels(arr[..., : 1 if channels in (1, 2) else 3])  # only the channels kept
    arr8 = np.repeat(arr8, 3, axis=-1) if channels in (1, 2) else arr8
    return np.ascontiguousarray(arr8)


def png_bytes(img: np.ndarray) -> bytes:
    """``img`` (uint8, H×W or H×W×3) as PNG: how lablens stores a cell, and what its sha256 names."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def png_sha256(img: np.ndarray) -> str:
    """The sha256 of :func:`png_bytes` ``(img)``: the name the review service stores a cell under."""
    return hashlib.sha256(png_bytes(img)).hexdigest()


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
