"""The settings of ``lablens serve``, YAML-loadable, written as ``serve.yaml`` into the service's image storage."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from lablens.infer.ood import DEFAULT_ALPHA, OodAlpha
from lablens.service.home import ServiceHome
from lablens.service.settings import ServiceSettings
from lablens.verb_config import VerbConfig

MIB = 1024 * 1024


class ServeConfig(VerbConfig):
    """What the review service classifies with, where it keeps its records, and its limits.

    Attributes:
        bundle: the single-cell bundle that pre-classifies every task (or ``registry``).
        registry: a folder of bundles per task (``REGISTRY/<task>/<name>/``).
        quality: with ``bundle``: a quality (blur-level) bundle; cells above ``max_level`` are not evaluable.
        ood_alpha: the out-of-distribution guard's flag rate (None: off).
        home, db, storage, audit_key: the installation folder, or its parts given one by one
            (:class:`~lablens.service.home.ServiceHome`).
        max_upload_mb, max_request_mb, max_request_megapixels, max_image_mb: the limits of one file, one
            request body, the decoded pixels of one submission and one decoded image.
        min_confidence: cells below this top probability go to the unidentified queue.
        one_person_lab: lift the four-eyes rule (the submitter or sole reviewer may sign).
    """

    verb: ClassVar[str] = "serve"

    bundle: Path | None = None
    registry: Path | None = None
    quality: Path | None = None
    max_level: float = 2.5
    ood_alpha: OodAlpha = DEFAULT_ALPHA
    home: Path | None = None
    db: str | None = None
    storage: Path | None = None
    audit_key: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = 10.0
    max_request_mb: float = 512.0
    max_request_megapixels: float = 1000.0
    max_image_mb: float = 512.0
    min_confidence: float = 0.5
    one_person_lab: bool = False

    def where(self) -> ServiceHome:
        """The database, image storage and audit key these settings name."""
        return ServiceHome.resolve(self.home, self.db, self.storage, self.audit_key)

    def service_settings(self, where: ServiceHome) -> ServiceSettings:
        """The service's own settings, in bytes and pixels, at ``where``."""
        return ServiceSettings(
            bundle=str(self.bundle) if self.bundle else None,
            registry=str(self.registry) if self.registry else None,
            quality=str(self.quality) if self.quality else None,
            max_level=self.max_level,
            ood_alpha=self.ood_alpha,
            db_url=where.db_url,
            storage=str(where.images),
            audit_key_file=str(where.key_file),
            max_upload_bytes=int(self.max_upload_mb * MIB),
            max_request_bytes=int(self.max_request_mb * MIB),
            max_request_pixels=int(self.max_request_megapixels * 1_000_000),
            max_image_bytes=int(self.max_image_mb * MIB),
            min_confidence=self.min_confidence,
            four_eyes=not self.one_person_lab,
        )
