"""Builders of test corpora shared by several test modules."""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from conftest import shape_image, write_shape_folder


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression bomb's signature)."""
    data = bytearray(_png_bytes(Image.new("L", (16, 16))))
    ihdr = 8 + 8  # signature, then length + type of IHDR
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13])) & 0xFFFFFFFF
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


# file name (relative to the corpus root) → expected problem kind
BAD_FILES = {
    "disc/truncated.jpg": "truncated",
    "disc/empty.png": "empty",
    "disc/not_an_image.jpg": "not_image",
    "ring/notes.txt": "not_image",
    "ring/bomb.png": "too_large",
    "ring/tiny.png": "too_small",
    "square/square_000_copy.png": "duplicate",
    "square/conflict.png": "label_conflict",
    "disc/conflict.png": "label_conflict",
}
BAD_NAME = b"disc/bad-name-\xff\xfe.png"


def build_bad_corpus(root: Path) -> Path:
    """Good shape images (3 classes) plus one file of every bad kind, and a class too small to split."""
    write_shape_folder(root, per_class=10)
    rng = np.random.default_rng(1)
    # good files in every awkward-but-valid format
    extra = {
        "disc/grey16.tif": lambda p: tifffile.imwrite(
            p, (shape_image("disc", rng)[..., 0].astype(np.uint16) * 257)
        ),
        "ring/rgba.png": lambda p: Image.fromarray(shape_image("ring", rng)).convert("RGBA").save(p),
        "ring/palette.png": lambda p: Image.fromarray(shape_image("ring", rng)).convert("P").save(p),
        "square/cmyk.jpg": lambda p: Image.fromarray(shape_image("square", rng)).convert("CMYK").save(p),
        "square/bitmap.bmp": lambda p: Image.fromarray(shape_image("square", rng)).save(p),
        "square/four16.tiff": lambda p: tifffile.imwrite(
            p,
            np.dstack([shape_image("square", rng), np.full((40, 40), 255, np.uint8)]).astype(np.uint16) * 257,
            photometric="rgb",
            extrasamples=[2],
        ),
    }
    for rel, write in extra.items():
        write(root / rel)
    buf = io.BytesIO()
    Image.fromarray(shape_image("disc", rng)).save(buf, "JPEG")
    (root / "disc/truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "disc/empty.png").write_bytes(b"")
    (root / "disc/not_an_image.jpg").write_text("hello, I am text\n")
    (root / "ring/notes.txt").write_text("lab notes\n")
    (root / "ring/bomb.png").write_bytes(bomb_png())
    Image.new("RGB", (6, 6)).save(root / "ring/tiny.png")
    shutil.copyfile(root / "square/square_000.png", root / "square/square_000_copy.png")
    shutil.copyfile(root / "ring/ring_000.png", root / "square/conflict.png")
    shutil.copyfile(root / "ring/ring_000.png", root / "disc/conflict.png")
    # the original ring_000.png also takes part in the conflict
    with open(os.fsencode(root) + b"/" + BAD_NAME, "wb") as fh:
        Image.fromarray(shape_image("disc", rng)).save(
            fh, format="PNG"
        )  # a valid image with a non-UTF-8 name
    (root / "lonely").mkdir()
    Image.fromarray(shape_image("disc", rng)).save(root / "lonely/only_one.png")
    return root
