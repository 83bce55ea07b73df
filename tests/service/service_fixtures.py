"""Helpers shared by the service tests (the fixtures themselves are in this folder's conftest.py)."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def submit(svc: dict, n: int = 6, name: str = "S-1", who: str = "technician") -> dict:
    """Submit ``n`` cell images as one sample; returns the sample document."""
    files = [("files", (f"cell_{i}.png", png(im), "image/png")) for i, im in enumerate(svc["images"][:n])]
    r = svc["client"].post("/api/samples", data={"name": name}, files=files, headers=svc["auth"][who])
    assert r.status_code == 201, r.text
    return r.json()


def drop_append_only_guard(engine) -> None:  # type: ignore[no-untyped-def]
    """What an attacker with full database access would do first: remove the append-only triggers."""
    from sqlalchemy import text

    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER audit_events_no_change ON audit_events"))
            conn.execute(text("DROP TRIGGER audit_events_no_truncate ON audit_events"))
        else:
            conn.execute(text("DROP TRIGGER audit_events_no_update"))
            conn.execute(text("DROP TRIGGER audit_events_no_delete"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: Path, db_url: str, storage: Path, *extra: str, env: dict | None = None):  # type: ignore[no-untyped-def]
    """``lablens serve`` as a real process; (process, base URL) once it answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "lablens.cli", "serve", "--bundle", str(bundle), "--db", db_url]
    cmd += ["--storage", str(storage), "--audit-key", str(storage / "audit.key")]  # the key beside the images
    cmd += ["--port", str(port), "--min-confidence", "0", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 120 s")


def migrate_to(url: str, revision: str):  # type: ignore[no-untyped-def]
    """An engine on ``url`` with the schema of migration ``revision`` (as an older lablens left it)."""
    from alembic import command
    from alembic.config import Config

    from lablens.service.db import MIGRATIONS, make_engine

    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return engine
