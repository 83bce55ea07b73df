"""``lablens predict`` as one call: a CSV/JSON table of a few images, or a resumable archive job in a folder.

The output decides: ``.csv``/``.json`` → :func:`lablens.workflows.predict.predict`; a folder → Parquet shards by
:func:`lablens.workflows.predict_archive.predict_archive` on the local or the Ray engine. Settings of the other
kind are errors naming them. The settings are written beside the output: ``<out>/_predict.yaml`` for a job
folder (the leading ``_`` keeps it out of ``pandas.read_parquet(out)``, like the job's own ``_job.json``),
``<out>.yaml`` (e.g. ``predictions.csv.yaml``) for a table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from lablens.errors import OutputExistsError, SettingError
from lablens.infer.ood import DEFAULT_ALPHA, OodAlpha
from lablens.nn.tta import TtaSetting, parse_policy
from lablens.verb_config import VerbConfig
from lablens.workflows.engine_options import RayOptions

#: the archive job's settings, as messages name them (None: not given, the defaults apply)
ARCHIVE_FLAGS = {"engine": "--engine", "shard_size": "--shard-size", "workers": "--workers"}


class PredictConfig(VerbConfig):
    """How images are classified.

    Attributes:
        top_k: classes per image, ranked by probability.
        quality: a quality (blur-level) bundle; images above ``max_level`` are not evaluable.
        backend: ``auto`` (ONNX Runtime on the CPU when the bundle has an export), ``torch`` or ``onnx``.
        tta: test-time augmentation: ``bundle`` (its own policy), ``off``, ``full``, ``adaptive[=MARGIN]``.
        ood_alpha: the out-of-distribution guard's flag rate (None: off).
        engine, shard_size, workers, ray: a job folder's engine (``local``, ``ray``), inputs per Parquet shard
            (1024), the local engine's decoding threads (2), and the Ray engine's cluster and actors.
    """

    verb: ClassVar[str] = "predict"

    top_k: int = 3
    batch_size: int = 64
    device: str = "auto"
    quality: Path | None = None
    max_level: float = 2.5
    backend: Literal["auto", "torch", "onnx"] = "auto"
    tta: TtaSetting = "bundle"
    ood_alpha: OodAlpha = DEFAULT_ALPHA
    engine: Literal["local", "ray"] | None = None
    shard_size: int | None = None
    workers: int | None = None
    ray: RayOptions = RayOptions()

    def archive_given(self) -> list[str]:
        """The archive settings given (as their options)."""
        return [f for k, f in ARCHIVE_FLAGS.items() if getattr(self, k) is not None] + self.ray.given()

    def common(self) -> dict[str, Any]:
        """What both kinds of output take, as the workflows' explicit arguments."""
        return {
            "top_k": self.top_k,
            "batch_size": self.batch_size,
            "device": self.device,
            "quality": self.quality,
            "max_level": self.max_level,
            "backend": self.backend,
            "tta": parse_policy(self.tta),
            "ood_alpha": self.ood_alpha,
        }


def predict_run(
    bundle: str | Path,
    paths: list[str | Path],
    out: str | Path,
    cfg: PredictConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    **settings: Any,
) -> Any:
    """Predict ``paths`` with ``bundle`` into ``out`` with ``cfg`` (or its settings as keywords)."""
    cfg, out = PredictConfig.resolve(cfg, settings), Path(out)
    if out.suffix.lower() in (".csv", ".json"):
        return _predict_table(bundle, paths, out, cfg, overwrite, progress)
    if overwrite:
        raise SettingError(
            "--overwrite applies to a .csv/.json --out; a job folder is resumed, never overwritten"
        )
    engine = cfg.engine or "local"
    if engine == "ray" and cfg.workers is not None:
        raise SettingError(
            "--workers sets the local engine's decoding threads; with --engine ray decoding runs as Ray tasks"
        )
    from lablens.workflows.predict_archive import predict_archive

    result = predict_archive(
        bundle,
        paths,
        out,
        engine=engine,
        shard_size=cfg.shard_size or 1024,
        workers=cfg.workers or 2,
        ray=cfg.ray.settings(engine),
        progress=progress,
        **cfg.common(),
    )
    cfg.write(out / "_predict.yaml")
    return result


def _predict_table(
    bundle: str | Path,
    paths: list[str | Path],
    out: Path,
    cfg: PredictConfig,
    overwrite: bool,
    progress: bool,
) -> Any:
    """A few images into one CSV/JSON table, its settings in ``<out>.yaml``."""
    if cfg.archive_given():
        raise SettingError(
            f"{', '.join(cfg.archive_given())} apply to a folder --out (Parquet shards), not to {out.name}"
        )
    written = out.with_name(out.name + ".yaml")
    if written.exists() and not overwrite and not out.exists():
        raise OutputExistsError(f"{written} exists; choose another --out (or pass --overwrite)")
    from lablens.workflows.predict import predict

    result = predict(bundle, paths, out, overwrite=overwrite, progress=progress, **cfg.common())
    cfg.write(written)
    return result
