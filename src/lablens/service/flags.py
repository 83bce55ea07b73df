"""Quality flags a technician sees on each cell: exposure from the pixels, blur relative to the rest of the sample.

Absolute sharpness depends on the camera, stain and cell type, so a cell is flagged ``blurred`` when its
Laplacian variance is below ``BLUR_SHARE`` of the sample's median (needs at least ``MIN_CELLS_FOR_BLUR`` cells).
Exposure flags use the share of clipped pixels. The measures are lablens.quality's registered ones.
"""

from __future__ import annotations

import numpy as np

from lablens.quality.measures import measure_image

BLUR_SHARE = 0.25
MIN_CELLS_FOR_BLUR = 5
CLIPPED_SHARE = 0.05


def quality_flags(images: list[np.ndarray]) -> list[list[str]]:
    """One list of flags per image of a sample."""
    m = [measure_image(img, ["laplacian_var", "saturated", "underexposed"]) for img in images]
    sharp = np.array([x["laplacian_var"] for x in m])
    ref = float(np.median(sharp)) if len(images) >= MIN_CELLS_FOR_BLUR else None
    out = []
    for x, s in zip(m, sharp, strict=True):
        flags = []
        if ref is not None and ref > 0 and s < BLUR_SHARE * ref:
            flags.append("blurred")
        if x["saturated"] > CLIPPED_SHARE:
            flags.append("overexposed")
        if x["underexposed"] > CLIPPED_SHARE:
            flags.append("underexposed")
        out.append(flags)
    return out
