"""``lablens export``: a bundle for ONNX Runtime, parity-checked against torch on the CPU.

The export's settings are recorded in the ``onnx.json`` it writes beside ``model.onnx`` (its ``parity`` block
names the tolerance), so no other file is added to a bundle folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import field_validator

from lablens.infer.onnx_export import OnnxExport, export_onnx
from lablens.verb_config import VerbConfig


class ExportConfig(VerbConfig):
    """``format``: onnx (the one runtime lablens exports to); ``tolerance``: the largest allowed difference of
    calibrated probabilities, torch vs ONNX Runtime, on the check batch."""

    verb: ClassVar[str] = "export"

    format: str = "onnx"
    tolerance: float = 1e-4

    @field_validator("format")
    @classmethod
    def _onnx_only(cls, v: str) -> str:
        if v != "onnx":
            raise ValueError(f"--format {v!r}: only onnx is supported")
        return v


def export(
    bundle: str | Path, out: str | Path | None = None, cfg: ExportConfig | None = None, **settings: Any
) -> OnnxExport:
    """Export ``bundle`` (into ``out``, default the bundle's own folder) with ``cfg`` (or its settings)."""
    cfg = ExportConfig.resolve(cfg, settings)
    return export_onnx(bundle, out, tolerance=cfg.tolerance)
