"""``lablens train`` as one call: which of the two training workflows a run is, and the settings that apply.

``label_level="image"`` trains on labelled images (:func:`lablens.workflows.train.train`); ``"sample"`` trains on
fields with one label per sample, learnt from the cells of its fields (:func:`lablens.workflows.train_samples.
train_samples`). A setting that does not apply to the chosen level is an error naming it; a sample-level run
resumes as one, with the field settings it was started with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lablens.config import RunConfig, build_config
from lablens.errors import SettingError
from lablens.workflows.analyze_config import PixelBox
from lablens.workflows.train import TrainResult, train
from lablens.workflows.train_samples import SETTINGS as SAMPLE_RUN
from lablens.workflows.train_samples import SampleTrainResult, train_samples

#: what --label-level sample starts from: a multiple-instance model on 64-px cell crops, 8 bags per step, no TTA
SAMPLE_LEVEL_DEFAULTS = {
    "model.name": "mil",
    "model.image_size": 64,
    "model.tta": False,
    "train.batch_size": 8,
}


class SampleLevel(BaseModel):
    """The field settings of a sample-level run (``--task``, ``--um-per-px``, ``--ignore-region``)."""

    model_config = ConfigDict(extra="forbid")

    task: str | None = None
    um_per_px: float | None = Field(None, gt=0)
    ignore_regions: list[PixelBox] = Field(default_factory=list)

    def given(self) -> bool:
        return self.task is not None or self.um_per_px is not None or bool(self.ignore_regions)


def train_run(
    data: str | Path | None,
    out: str | Path,
    *,
    config: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    label_level: Literal["image", "sample"] | str = "image",
    fields: SampleLevel | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult | SampleTrainResult:
    """Build the run's config (defaults → the level's defaults → ``config`` → ``overrides``) and train."""
    out, fields, overrides = Path(out), fields or SampleLevel(), overrides or {}
    if data is None and not resume:
        raise SettingError("DATA is required (except with --resume)")
    if resume and (out / SAMPLE_RUN).is_file():  # a sample-level run resumes as one, with its settings
        if fields.given():
            raise SettingError(
                "--task, --um-per-px and --ignore-region come from the run being resumed; leave them out"
            )
        label_level = "sample"
    _check_level(label_level, fields, overrides)
    cfg: RunConfig = build_config(
        config, overrides, defaults=SAMPLE_LEVEL_DEFAULTS if label_level == "sample" else None
    )
    if label_level == "image":
        return train(data, out, cfg, resume=resume, progress=progress)
    return train_samples(
        data,
        out,
        cfg,
        task=fields.task or "ana",
        um_per_px=fields.um_per_px,
        ignore_regions=list(fields.ignore_regions),
        resume=resume,
        progress=progress,
    )


def _check_level(label_level: str, fields: SampleLevel, overrides: dict[str, Any]) -> None:
    """Refuse, naming it, every setting that does not apply to ``label_level``."""
    if label_level not in ("image", "sample"):
        raise SettingError(f"--label-level {label_level!r}: choose image or sample")
    if label_level == "image" and fields.given():
        raise SettingError(
            "--task, --um-per-px and --ignore-region apply to --label-level sample (fields with sample labels)"
        )
    if label_level == "sample" and (overrides.get("data.synthetic") or overrides.get("data.synthetic_ratio")):
        raise SettingError(
            "--synthetic applies to --label-level image (labelled images), not to sample-level runs"
        )
    if label_level == "sample" and overrides.get("train.nproc"):
        raise SettingError(
            "--nproc does not apply to --label-level sample yet: sample-level runs train in one process"
        )
