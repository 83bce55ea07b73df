"""Feature-extractor throughput: images per second of every registered extractor on one CPU core.

Command:
    python benchmarks/feature_throughput.py [--data ../shared/data/pbc] [--n 200] [--size 128]
        [--extractors hu,zernike,haralick,lbp,colour,morphology,deep[efficientnet_lite0]]
        [--out benchmarks/results/feature_throughput.json]

Reads ``--n`` images from ``--data`` (PBC when present; otherwise ``blood-cells`` phantoms are generated),
resizes them to ``--size`` as ``lablens compare`` would, then times each extractor alone, uncached, with torch,
OpenMP and BLAS limited to one thread (set before NumPy loads). The cell view (grey, HSV, mask) is part of each
handcrafted extractor's time, as it is in use. Prints a table and writes JSON.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lablens.data.io import read_image  # noqa: E402
from lablens.data.preprocess import to_square  # noqa: E402
from lablens.features.registry import create_extractor, split_top  # noqa: E402
from lablens.phantoms import write_phantoms  # noqa: E402

DEFAULT = "hu,zernike,haralick,lbp,colour,morphology,deep[efficientnet_lite0]"
SHARED_PBC = Path(__file__).resolve().parents[2] / "shared" / "data" / "pbc"


def _images(data: Path | None, n: int, size: int) -> tuple[np.ndarray, str]:
    if data is None or not data.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix="lablens-throughput-"))
        write_phantoms("blood-cells", tmp, n=n, seed=0)
        data, source = tmp, "blood-cells phantoms"
    else:
        source = str(data)
    paths = sorted(
        p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff")
    )
    rng = np.random.default_rng(0)
    chosen = [paths[i] for i in sorted(rng.choice(len(paths), size=min(n, len(paths)), replace=False))]
    return np.stack([to_square(read_image(p).pixels, size, "pad") for p in chosen]), source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED_PBC)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--extractors", default=DEFAULT)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/feature_throughput.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    images, source = _images(args.data, args.n, args.size)
    rows = []
    for term in split_top(args.extractors, ","):
        extractor = create_extractor(term)
        extractor.transform(images[:4])  # warm-up: imports, network construction
        t0 = time.perf_counter()
        feats = extractor.transform(images)
        seconds = time.perf_counter() - t0
        rows.append(
            {
                "extractor": term,
                "features": int(feats.shape[1]),
                "images": len(images),
                "seconds": round(seconds, 3),
                "images_per_s": round(len(images) / seconds, 1),
            }
        )
        print(f"{term:32s} {feats.shape[1]:5d} features  {len(images) / seconds:8.1f} images/s")
    doc = {
        "benchmark": "feature_throughput",
        "command": "python benchmarks/feature_throughput.py "
        + f"--n {args.n} --size {args.size} --extractors '{args.extractors}'",
        "data": source,
        "image_size": args.size,
        "threads": 1,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
        },
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
