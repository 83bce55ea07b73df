"""What never enters git: keys, databases, stored patient images (an installation's state, not the project's)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECRET = re.compile(r"(\.key|\.pem|\.db|\.sqlite3?|-wal|-shm)$|(^|/)lablens-images/", re.IGNORECASE)


def test_no_key_database_or_service_image_is_tracked() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout of lablens")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = [f for f in tracked.splitlines() if SECRET.search(f)]
    assert found == [], f"tracked but belonging to an installation: {found}"


def test_git_ignores_what_an_older_lablens_left_in_the_current_folder() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout of lablens")
    paths = ["lablens.db", "lablens.db-wal", "audit.key", "lablens-images/ab/x.png", "lablens-demo/run/x"]
    done = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert sorted(done.stdout.split()) == sorted(paths)
