"""Killing the server (SIGKILL) in the middle of a burst of reviews loses no acknowledged action.

``lablens serve`` runs as a real process; six clients review cells as fast as they can; after a dozen
acknowledgements the process is killed without warning. Every review that got a 200 must then be in the database,
with its audit event, the audit chain must verify, and a restarted server must serve the same state.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from service_fixtures import start_server
from sqlalchemy import create_engine, select, text

from lablens.service import audit
from lablens.service.audit_key import load_key
from lablens.service.auth import create_user
from lablens.service.db import make_engine, sessions, upgrade
from lablens.service.models import AuditEvent, Cell

from conftest import tiny_bundle


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_sigkill_mid_burst_loses_no_acknowledged_review(kind: str, tmp_path: Path) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'l.db'}"
    else:
        url = os.environ.get("LABLENS_TEST_POSTGRES_URL") or pytest.skip(
            "no PostgreSQL: set LABLENS_TEST_POSTGRES_URL (.ci/run starts one with .ci/postgres.sh)"
        )
        with create_engine(url).begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    bundle, images = tiny_bundle(tmp_path / "b")
    engine = make_engine(url)
    upgrade(engine)
    key = load_key(tmp_path / "img" / "audit.key")  # the key the server finds in its storage folder
    with sessions(engine)() as s:
        token = create_user(s, key, "tina", "technician")
        s.commit()
    engine.dispose()
    h = {"Authorization": f"Bearer {token}"}
    proc, base = start_server(bundle, url, tmp_path / "img")
    try:
        import io

        from PIL import Image

        def png(im) -> bytes:
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="PNG")
            return buf.getvalue()

        cells: list[int] = []
        for k in range(5):
            files = [("files", (f"c{i}.png", png(im), "image/png")) for i, im in enumerate(images)]
            r = httpx.post(base + "/api/samples", data={"name": f"S{k}"}, files=files, headers=h, timeout=60)
            cells += [c["id"] for c in r.json()["cells"]]
        classes = httpx.get(base + "/api/health").json()["classes"]
        acked: dict[int, tuple[str, str]] = {}
        lock = threading.Lock()

        def worker(mine: list[int]) -> None:
            with httpx.Client(base_url=base, headers=h, timeout=10) as client:
                for i, cid in enumerate(mine):
                    body = {"action": "reclassify", "label": classes[i % len(classes)]}
                    try:
                        r = client.post(f"/api/cells/{cid}/review", json=body)
                    except httpx.TransportError:
                        return  # the server is gone
                    if r.status_code == 200:
                        with lock:
                            acked[cid] = (r.json()["label"], r.json()["status"])

        threads = [threading.Thread(target=worker, args=(cells[j::6],)) for j in range(6)]
        for t in threads:
            t.start()
        while len(acked) < 12 and any(t.is_alive() for t in threads):
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for t in threads:
            t.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert 12 <= len(acked) < len(cells), "the kill must land mid-burst"
    engine = make_engine(url)
    with sessions(engine)() as s:
        stored = {c.id: (c.label, c.status) for c in s.execute(select(Cell)).scalars()}
        for cid, state in acked.items():
            assert stored[cid] == state, cid
        logged = {
            e.entity_id for e in s.execute(select(AuditEvent).where(AuditEvent.entity == "cell")).scalars()
        }
        assert set(acked) <= logged
        assert audit.verify(s, key)["ok"] is True
    engine.dispose()
    proc, base = start_server(bundle, url, tmp_path / "img")  # a restarted server serves the same state
    try:
        assert httpx.get(base + "/api/samples", headers=h).status_code == 200
        first = next(iter(acked))
        sample = next(
            d
            for d in (httpx.get(f"{base}/api/samples/{k}", headers=h).json() for k in range(1, 6))
            if any(c["id"] == first for c in d["cells"])
        )
        assert next(c for c in sample["cells"] if c["id"] == first)["label"] == acked[first][0]
    finally:
        proc.kill()
        proc.wait(10)
