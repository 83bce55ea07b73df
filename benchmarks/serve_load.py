"""Load on the review service: concurrent clients against a local ``lablens serve``, latency and throughput.

Command:
    python benchmarks/serve_load.py [--clients 20] [--requests 50] [--db sqlite|URL] [--bundle RUN/bundle]
        [--out benchmarks/results/serve_load.json]

Starts ``lablens serve`` as its own process (one uvicorn worker) on a fresh database (a SQLite file, or the given
PostgreSQL URL, whose schema is emptied first), with a bundle (default: a tiny test network fitted in seconds),
adds a technician, submits 4 samples of 12 cells, then runs ``--clients`` threads, each with its own HTTP
connection, doing ``--requests`` requests: 50 % fetch a sample with its cells, 25 % review a cell
(confirm/reclassify, a database write with its audit event), 25 % fetch a cell image. Reports errors (any
non-2xx or transport failure), p50/p95/p99 latency per kind and overall, throughput, and whether the audit chain
still verifies. Writes JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from lablens.infer.bundle import save_bundle
from lablens.models.registry import create_estimator
from lablens.service.audit_key import load_key
from lablens.service.auth import create_user
from lablens.service.db import make_engine, sessions, upgrade
from lablens.train.context import FitContext


def _tiny_bundle(folder: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    y = np.array(["a", "b", "c"] * 4)
    est = create_estimator("test_resnet", image_size=32, epochs=1, batch_size=4, augment=None)
    card = {"image_size": 32, "resize_mode": "pad", "temperature": 1.0, "metrics": {}}
    save_bundle(
        folder,
        est.fit(X, y, context=FitContext(device="cpu")),
        estimator_name="test_resnet",
        training={"note": "load test"},
        **card,
    )
    return folder, X


def _png(im: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format="PNG")
    return buf.getvalue()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--db", default="sqlite")
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_load.json"))
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lablens-load-"))
    bundle, images = _tiny_bundle(tmp / "bundle") if args.bundle is None else (args.bundle, None)
    if images is None:
        images = np.random.default_rng(0).integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)
    url = f"sqlite:///{tmp / 'load.db'}" if args.db == "sqlite" else args.db
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    key = load_key(tmp / "img" / "audit.key")  # the server finds it in its storage folder
    with sessions(engine)() as s:
        token = create_user(s, key, "load", "reviewer")
        s.commit()
    port = _port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "lablens.cli", "serve", "--bundle", str(bundle), "--db", url]
    server = subprocess.Popen(
        [
            *cmd,
            "--storage",
            str(tmp / "img"),
            "--audit-key",
            str(tmp / "img" / "audit.key"),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    h = {"Authorization": f"Bearer {token}"}
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        samples, cells = [], []
        for k in range(4):
            files = [("files", (f"c{i}.png", _png(im), "image/png")) for i, im in enumerate(images[:12])]
            doc = httpx.post(
                base + "/api/samples", data={"name": f"L{k}"}, files=files, headers=h, timeout=60
            ).json()
            samples.append(doc["id"])
            cells += [c["id"] for c in doc["cells"]]
        classes = httpx.get(base + "/api/health").json()["classes"]
        results: list[tuple[str, float, bool]] = []
        lock = threading.Lock()

        def client(seed: int) -> None:
            rng = random.Random(seed)
            out = []
            with httpx.Client(base_url=base, headers=h, timeout=30) as c:
                for _ in range(args.requests):
                    r = rng.random()
                    t0 = time.perf_counter()
                    try:
                        if r < 0.5:
                            kind, resp = "get_sample", c.get(f"/api/samples/{rng.choice(samples)}")
                        elif r < 0.75:
                            body = {"action": "reclassify", "label": rng.choice(classes)}
                            kind, resp = "review", c.post(f"/api/cells/{rng.choice(cells)}/review", json=body)
                        else:
                            kind, resp = "cell_image", c.get(f"/api/cells/{rng.choice(cells)}/image")
                        ok = resp.is_success
                    except httpx.TransportError:
                        kind, ok = "transport", False
                    out.append((kind, time.perf_counter() - t0, ok))
            with lock:
                results.extend(out)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        chain = httpx.get(base + "/api/audit/verify", headers=h).json()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)

    def stats(rows: list[tuple[str, float, bool]]) -> dict:
        ms = np.array([r[1] for r in rows]) * 1000
        return {
            "n": len(rows),
            "errors": sum(not r[2] for r in rows),
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
        }

    doc = {
        "command": " ".join(["python benchmarks/serve_load.py", *sys.argv[1:]]),
        "machine": platform.platform(),
        "cpu_count": __import__("os").cpu_count(),
        "database": engine.dialect.name,
        "clients": args.clients,
        "requests_per_client": args.requests,
        "overall": stats(results),
        "by_kind": {k: stats([r for r in results if r[0] == k]) for k in sorted({r[0] for r in results})},
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(results) / wall, 1),
        "audit_chain": chain,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(
        json.dumps({k: doc[k] for k in ("database", "overall", "throughput_rps", "audit_chain")}),
        "→",
        args.out,
    )


if __name__ == "__main__":
    main()
