"""Where one review service's state lives: its database, its stored images and its audit key.

By default all three sit in the installation's folder (:func:`lablens.home.lablens_home`: ``--home DIR``, else
``$LABLENS_HOME``, else the per-user data folder), so that ``lablens serve``, ``add-user``, ``users``, ``audit``
and ``export-reviews`` run from any folder find the same service, and nothing lands in the current folder (or
in a clone of lablens, where ``git add .`` would commit patient images). ``--db``, ``--storage`` and
``--audit-key`` place one of them elsewhere (a PostgreSQL database, a mounted volume, a key on another disk).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lablens.home import ensure_home, lablens_home

DB_FILE = "lablens.db"
IMAGES = "images"
KEY_FILE = "audit.key"


@dataclass(frozen=True)
class ServiceHome:
    """The service's database URL, image folder and audit key file."""

    db_url: str
    images: Path
    key_file: Path

    @classmethod
    def resolve(
        cls,
        home: str | Path | None = None,
        db: str | None = None,
        storage: str | Path | None = None,
        audit_key: str | Path | None = None,
    ) -> ServiceHome:
        """The given places, the rest in the installation's folder (created, owner-only, when it is used)."""
        root = lablens_home(home)
        if not (db and storage and audit_key):
            ensure_home(root)
        return cls(
            db_url=db or f"sqlite:///{(root / DB_FILE).resolve()}",
            images=Path(storage).expanduser() if storage else root / IMAGES,
            key_file=Path(audit_key).expanduser() if audit_key else root / KEY_FILE,
        )

    def describe(self) -> str:
        from lablens.service.db import shown_url

        return f"database {shown_url(self.db_url)}, images {self.images}, audit key {self.key_file}"
