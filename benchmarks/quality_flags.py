"""Quality flags on the review page, measured: how many normal cells are flagged, and how many overexposed ones.

Command:
    python benchmarks/quality_flags.py --bundle RUN/bundle --data ../shared/data/pbc [--gain 1.6]
        [--out benchmarks/results/quality_flags.json]

Every image of ``--data`` is submitted to the review service (in-process, SQLite, the bundle served with
``--bundle``), in samples of 50 cells, once as it is and once with every channel multiplied by ``--gain`` and
clipped at 255 (an overexposed camera). For each set: the share of cells flagged ``overexposed``,
``underexposed`` and ``blurred``. The flags come from the bundle's reference of its own training images
(:mod:`lablens.quality.reference`); the fixed rule they replace (more than 5 % of the pixels clipped) is
measured on the same cells for comparison. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lablens.data.io import SUPPORTED_SUFFIXES, read_image, walk_files
from lablens.data.preprocess import to_square
from lablens.infer.bundle import load_bundle
from lablens.quality.measures import measure_image

SAMPLE = 50
FIXED_CLIPPED_SHARE = 0.05  # the rule of lablens before this benchmark: > 5 % of pixels clipped


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _submit_all(client: Any, auth: dict, images: list[np.ndarray], tag: str) -> list[dict]:
    cells = []
    for start in range(0, len(images), SAMPLE):
        files = [
            ("files", (f"{tag}_{start + i}.png", _png(im), "image/png"))
            for i, im in enumerate(images[start : start + SAMPLE])
        ]
        r = client.post("/api/samples", data={"name": f"{tag}-{start}"}, files=files, headers=auth)
        r.raise_for_status()
        cells.extend(r.json()["cells"])
    return cells


def _shares(cells: list[dict]) -> dict[str, Any]:
    n = len(cells)
    out: dict[str, Any] = {"cells": n}
    for flag in ("overexposed", "underexposed", "blurred"):
        k = sum(flag in c["flags"] for c in cells)
        out[flag] = {"n": k, "share": round(k / n, 4)}
    k = sum(bool({"overexposed", "underexposed"} & set(c["flags"])) for c in cells)
    out["exposure"] = {"n": k, "share": round(k / n, 4)}
    reasons = [c["flag_reasons"].get("overexposed") for c in cells if "overexposed" in c["flags"]]
    out["example_reason"] = reasons[0] if reasons else None
    return out


def _fixed_rule(images: list[np.ndarray], size: int, mode: str) -> float:
    clipped = [measure_image(to_square(im, size, mode), ["saturated"])["saturated"] for im in images]
    return round(float(np.mean(np.asarray(clipped) > FIXED_CLIPPED_SHARE)), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--gain", type=float, default=1.6)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/quality_flags.json"))
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from lablens.service.app import ServiceSettings, create_app
    from lablens.service.auth import create_user
    from lablens.service.db import sessions

    files = sorted(f for f in walk_files(args.data) if f.suffix.lower() in SUPPORTED_SUFFIXES)
    images = [read_image(f).pixels for f in files]
    gained = [np.clip(im.astype(np.float32) * args.gain, 0, 255).astype(np.uint8) for im in images]
    b = load_bundle(args.bundle)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lablens-flags-") as tmp:
        settings = ServiceSettings(
            str(args.bundle), f"sqlite:///{tmp}/l.db", f"{tmp}/img", min_confidence=0.0, max_files=SAMPLE
        )
        app = create_app(settings)
        with sessions(app.state.engine)() as s:
            token = create_user(s, app.state.service.audit_key, "bench", "technician")
            s.commit()
        client = TestClient(app)
        auth = {"Authorization": f"Bearer {token}"}
        normal = _shares(_submit_all(client, auth, images, "normal"))
        over = _shares(_submit_all(client, auth, gained, f"gain{args.gain:g}"))
    seconds = time.perf_counter() - t0
    doc = {
        "bundle": str(args.bundle),
        "bundle_hash": b.hash,
        "reference_images": ((b.card.get("ood") or {}).get("appearance") or {}).get("n_images"),
        "data": str(args.data),
        "gain": args.gain,
        "normal": normal,
        f"gain_{args.gain:g}": over,
        "fixed_rule_overexposed_share": {
            "normal": _fixed_rule(images, b.image_size, b.resize_mode),
            f"gain_{args.gain:g}": _fixed_rule(gained, b.image_size, b.resize_mode),
        },
        "seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }
    print(
        f"{'set':14s} {'cells':>6s} {'overexposed':>12s} {'underexposed':>13s} {'blurred':>8s} {'fixed rule':>11s}"
    )
    for name, key in (("as acquired", "normal"), (f"gain x{args.gain:g}", f"gain_{args.gain:g}")):
        d = doc[key]
        print(
            f"{name:14s} {d['cells']:6d} {d['overexposed']['share']:12.2%} {d['underexposed']['share']:13.2%} "
            f"{d['blurred']['share']:8.2%} {doc['fixed_rule_overexposed_share'][key]:11.2%}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
