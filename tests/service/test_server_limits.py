"""``lablens serve`` as a real process under large submissions: its memory stays flat whatever the number of files
(one decoded image at a time), and an anonymous upload is refused without a byte written to disk.

Memory is read from the server's own /proc entry (VmHWM, the peak resident size). ``benchmarks/serve_memory.py``
measures the full probe (40 PNGs of 6000×6000) before and after.
"""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw
from service_fixtures import start_server

from lablens.service.audit_key import load_key
from lablens.service.auth import create_user
from lablens.service.db import make_engine, sessions, upgrade

from conftest import tiny_bundle

pytestmark = pytest.mark.slow
MiB = 2**20


def _big_png(side: int = 6000) -> bytes:
    im = Image.new("RGB", (side, side), (226, 220, 214))
    ImageDraw.Draw(im).ellipse((1000, 1000, 1400, 1400), fill=(120, 90, 180))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _peak_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmHWM")


def _temp_bytes(pid: int, tmp: Path) -> int:
    """Bytes in files below ``tmp`` that the process holds open (spooled uploads are unlinked but open)."""
    total = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            if os.readlink(fd).startswith(str(tmp)):
                total += os.stat(fd).st_size
        except OSError:
            continue
    return total


def test_memory_stays_flat_and_anonymous_uploads_reach_no_disk(tmp_path: Path) -> None:
    bundle, _ = tiny_bundle(tmp_path / "b")
    url = f"sqlite:///{tmp_path / 'l.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with sessions(engine)() as s:
        token = create_user(s, load_key(tmp_path / "img" / "audit.key"), "tina", "technician")
        s.commit()
    engine.dispose()
    spool = tmp_path / "spool"
    spool.mkdir()
    env = {**os.environ, "TMPDIR": str(spool)}
    proc, base = start_server(bundle, url, tmp_path / "img", "--max-request-megapixels", "2000", env=env)
    h = {"Authorization": f"Bearer {token}"}
    png = _big_png()
    try:
        peaks = []
        for n in (2, 8):
            files = [("files", (f"field_{i}.png", png, "image/png")) for i in range(n)]
            r = httpx.post(base + "/api/samples", data={"name": f"S{n}"}, files=files, headers=h, timeout=300)
            assert r.status_code == 201 and r.json()["n_cells"] == n, r.text
            peaks.append(_peak_mib(proc.pid))
        # 8 images of 108 MB decoded each cost no more than 2 did: one image is held at a time
        assert peaks[1] - peaks[0] < 100, peaks
        assert peaks[1] < 1536, peaks

        # what is there already (ONNX Runtime keeps a 51-byte session file in TMPDIR) is not upload data
        before = _temp_bytes(proc.pid, spool)
        seen = [0]
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                seen[0] = max(seen[0], _temp_bytes(proc.pid, spool) - before)
                time.sleep(0.005)

        threading.Thread(target=watch, daemon=True).start()

        def body():  # type: ignore[no-untyped-def]
            yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
            for _ in range(64):
                yield b"\0" * MiB

        try:
            r = httpx.post(
                base + "/api/samples",
                content=body(),
                headers={"Content-Type": "multipart/form-data; boundary=b"},
                timeout=60,
            )
            assert r.status_code == 401
        except httpx.HTTPError:
            pass  # the server answered 401 and closed the connection while the client was still sending
        stop.set()
        assert seen[0] == 0, f"{seen[0]} bytes of an anonymous upload reached the disk"
    finally:
        proc.kill()
        proc.wait(10)
