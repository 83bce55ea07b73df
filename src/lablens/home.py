"""Where an installation keeps its state: one per-user folder, never the current folder.

``lablens serve``, ``add-user``, ``users``, ``audit`` and ``export-reviews`` keep the review service's database
(SQLite by default), its stored images and its audit key there, and ``demo`` and ``compare`` write there when
no ``--out`` is given. The folder is ``--home DIR`` when given, else ``$LABLENS_HOME``, else the platform's
per-user data folder (``platformdirs.user_data_dir("lablens")``: ``~/.local/share/lablens`` on Linux). It is
created readable by its owner only: it holds patient images and a secret key.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "LABLENS_HOME"


def lablens_home(home: str | Path | None = None) -> Path:
    """The installation's folder: ``home``, else ``$LABLENS_HOME``, else the per-user data folder."""
    if home is not None and str(home) != "":
        return Path(home).expanduser()
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("lablens", appauthor=False))


def ensure_home(folder: Path) -> Path:
    """Create ``folder`` (owner-only permissions) if it does not exist yet; an existing one is left as it is."""
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)  # another process may create it at the same time
    return folder


def unique_dir(base: Path) -> Path:
    """``base`` if free, else ``base-2``, ``base-3`` …: a default output folder is never reused."""
    if not base.exists():
        return base
    i = 2
    while Path(f"{base}-{i}").exists():
        i += 1
    return Path(f"{base}-{i}")


def default_output(verb: str) -> Path:
    """A new folder for a verb run without ``--out`` (``<home>/<verb>``, numbered when taken)."""
    return unique_dir(ensure_home(lablens_home()) / verb)
