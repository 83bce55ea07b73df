"""``lablens predict`` as one call: a CSV/JSON table of a few images, or a resumable archive job in a folder.

The output decides: ``.csv``/``.json`` → :func:`lablens.workflows.predict.predict`; a folder → Parquet shards by
:func:`lablens.workflows.predict_archive.predict_archive` on the local or the Ray engine. Options of the other
kind are errors naming them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from lablens.errors import SettingError
from lablens.workflows.engine_options import RayOptions


class ArchiveOptions(BaseModel):
    """How an archive job runs (None: not given, the defaults apply)."""

    model_config = ConfigDict(extra="forbid")

    engine: str | None = None
    shard_size: int | None = None
    workers: int | None = None
    ray: RayOptions = RayOptions()

    def given(self) -> list[str]:
        flags = {"engine": "--engine", "shard_size": "--shard-size", "workers": "--workers"}
        return [flags[k] for k in flags if getattr(self, k) is not None] + self.ray.given()


def predict_run(
    bundle: str | Path,
    paths: list[str | Path],
    out: str | Path,
    *,
    overwrite: bool = False,
    archive: ArchiveOptions | None = None,
    **common: Any,
) -> Any:
    """Predict ``paths`` with ``bundle`` into ``out``; ``common``: what both kinds take (top_k, tta, device …)."""
    out, archive = Path(out), archive or ArchiveOptions()
    if out.suffix.lower() in (".csv", ".json"):
        if archive.given():
            raise SettingError(
                f"{', '.join(archive.given())} apply to a folder --out (Parquet shards), not to {out.name}"
            )
        from lablens.workflows.predict import predict

        return predict(bundle, paths, out, overwrite=overwrite, **common)
    if overwrite:
        raise SettingError(
            "--overwrite applies to a .csv/.json --out; a job folder is resumed, never overwritten"
        )
    engine = archive.engine or "local"
    if engine == "ray" and archive.workers is not None:
        raise SettingError(
            "--workers sets the local engine's decoding threads; with --engine ray decoding runs as Ray tasks"
        )
    from lablens.workflows.predict_archive import predict_archive

    return predict_archive(
        bundle,
        paths,
        out,
        engine=engine,
        shard_size=archive.shard_size or 1024,
        workers=archive.workers or 2,
        ray=archive.ray.settings(engine),
        **common,
    )
