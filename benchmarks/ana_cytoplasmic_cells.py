"""Whole cells on the cytoplasmic ana-fields slides (AMA mitochondrial, FIB fibrillar): counts and a montage.

Command:
    python benchmarks/ana_cytoplasmic_cells.py [--out docs/fields/ana_cells_cytoplasmic.jpg]

Runs the ``cells`` detector (and, for comparison, the ``nuclei`` detector) on the six AMA/FIB fields of
../shared/data/ana-fields (scale bar left out, 0.093 µm/px), prints the objects found per field and writes a
montage of the cell overlays. There is no per-cell truth on these fields: the montage is for the eye.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from lablens.data.io import read_image
from lablens.fields.crops import draw_overlay
from lablens.fields.detection import create_detector

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ana-fields"
ANA_BAR = (0, 0, 420, 80)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=Path("docs/fields/ana_cells_cytoplasmic.jpg"))
    a = ap.parse_args()
    tiles, counts = [], {}
    for name in ("AMA-1", "AMA-2", "AMA-3", "FIB-1", "FIB-2", "FIB-3"):
        img = read_image(a.data / f"{name}.jpg").pixels
        cells = create_detector("cells", um_per_px=0.093, ignore_regions=[ANA_BAR]).detect(img)
        nuclei = create_detector("nuclei", um_per_px=0.093, ignore_regions=[ANA_BAR]).detect(img)
        counts[name] = {"cells": len(cells), "nuclei_detector": len(nuclei)}
        tile = Image.fromarray(draw_overlay(img, cells)).resize((648, 483))
        tiles.append(np.asarray(tile))
    montage = np.concatenate([np.concatenate(tiles[:3], 1), np.concatenate(tiles[3:], 1)], 0)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(montage).save(a.out, quality=85)
    print(json.dumps(counts, indent=1))
    print(f"montage: {a.out}")


if __name__ == "__main__":
    main()
