"""What ``lablens serve`` configures: where things are, and the limits that protect the server and its records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lablens.errors import SettingError

MAX_ID = 2**31 - 1  # ids are 32-bit integer columns (PostgreSQL INTEGER); larger ones are refused with 422
UM_PER_PX_RANGE = (0.01, 10.0)  # physical field scales a microscope camera can have


@dataclass
class ServiceSettings:
    """Settings of the review service.

    Attributes:
        bundle: the single-cell bundle that pre-classifies every task (or give ``registry``).
        registry: a folder of bundles per task (:mod:`lablens.service.registry`).
        quality: with ``bundle``: a quality (blur-level) bundle gating its cells (a registry keeps one per task).
        max_level: the quality gate's highest score still evaluable.
        ood_alpha: the out-of-distribution guard's flag rate (None: off).
        db_url: SQLAlchemy URL (``sqlite:///lablens.db`` or ``postgresql+psycopg://user@host/db``).
        storage: folder for the cell images (content-addressed PNGs).
        max_upload_bytes: largest accepted file.
        max_files: most files in one submission.
        max_request_bytes: largest request body (checked against Content-Length before it is read, and while
            it streams in).
        max_request_pixels: decoded pixels one submission may hold in all (a 413 names the file that crosses it).
        max_image_bytes: largest decoded size of one image (pixels × channels × bytes per sample).
        min_confidence: cells below this top probability go to the "unidentified" queue.
        four_eyes: a sample is signed by a second person (not its submitter, and not its only reviewer);
            switch off only in a one-person laboratory.
        audit_key_file: the key of the audit chain's HMAC, kept outside the database (created on first start;
            default ``<storage>/audit.key``).
    """

    bundle: str | None  # None with a registry
    db_url: str
    storage: str
    registry: str | None = None
    quality: str | None = None
    max_level: float = 2.5
    ood_alpha: float | None = 0.01
    max_upload_bytes: int = 10 * 1024 * 1024
    max_files: int = 1000
    max_request_bytes: int = 512 * 1024 * 1024
    max_request_pixels: int = 1_000_000_000
    max_image_bytes: int = 512 * 1024 * 1024
    min_confidence: float = 0.5
    four_eyes: bool = True
    audit_key_file: str | None = None

    def __post_init__(self) -> None:
        if self.quality is not None and self.registry is not None:
            raise SettingError(
                "--quality applies to --bundle; a registry keeps each task's quality bundle in REGISTRY/<task>/quality"
            )

    @property
    def audit_key_path(self) -> Path:
        return Path(self.audit_key_file) if self.audit_key_file else Path(self.storage) / "audit.key"
