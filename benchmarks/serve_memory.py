"""Memory and disk of ``lablens serve`` under hostile submissions, read from the server process itself.

Command:
    python benchmarks/serve_memory.py [--src PATH] [--out benchmarks/results/serve_memory.json]

Each probe runs against a fresh ``lablens serve`` process (SQLite, a tiny bundle, its own TMPDIR) and reads the
process's peak resident memory (``VmHWM`` in /proc) and the largest size its temporary folder reached:

* ``big_pngs``: 40 PNGs of 6000×6000 pixels (about 44 KiB each: 1.8 MiB of request, 4.3 GB decoded) as one sample;
  once with the default submission budget (the 413 names the file that crosses it) and once with a budget that
  admits them all (every image decoded and stored);
* ``float_tiff``: one float64 RGBA TIFF of 5000×5000 (about 2 MiB, 800 MB decoded);
* ``anonymous_upload``: 200 MiB posted without a token.

``--src`` runs the server from another checkout's ``src`` (e.g. the code before this change) to compare; give it a
``--bundle`` that checkout can load.
Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
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
from PIL import Image, ImageDraw


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _big_png() -> bytes:
    im = Image.new("RGB", (6000, 6000), (226, 220, 214))
    draw = ImageDraw.Draw(im)
    for k in range(30):
        x, y = 300 + (k * 977) % 5400, 300 + (k * 1543) % 5400
        draw.ellipse((x, y, x + 180, y + 180), fill=(120, 90, 180))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _float_tiff() -> bytes:
    import tifffile

    a = np.zeros((5000, 5000, 4))
    a[..., 0] = 0.5
    buf = io.BytesIO()
    tifffile.imwrite(buf, a, photometric="rgb", extrasamples=["unassalpha"], compression="zlib")
    return buf.getvalue()


def _bundle(folder: Path) -> Path:
    from lablens.infer.bundle import save_bundle
    from lablens.models.registry import create_estimator
    from lablens.train.context import FitContext

    X = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    y = np.array(["a", "b", "c"] * 4)
    est = create_estimator("test_resnet", image_size=32, epochs=1, batch_size=4, augment=None)
    save_bundle(
        folder,
        est.fit(X, y, context=FitContext(device="cpu")),
        estimator_name="test_resnet",
        image_size=32,
        resize_mode="pad",
        training={"note": "memory probe"},
    )
    return folder


class Server:
    """``lablens serve`` in its own folder (database, images, key and TMPDIR all inside it)."""

    def __init__(self, root: Path, bundle: Path, env: dict[str, str], extra: list[str]) -> None:
        self.root, self.tmp = root, root / "tmp"
        self.tmp.mkdir(parents=True)
        self.env = {**env, "TMPDIR": str(self.tmp)}
        run = [sys.executable, "-m", "lablens.cli"]
        add = subprocess.run(
            [*run, "add-user", "tina", "--home", str(root)],
            cwd=root,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if add.returncode != 0:
            raise RuntimeError(add.stdout + add.stderr)
        self.token = add.stdout.strip().splitlines()[-1]
        port = _port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [*run, "serve", "--bundle", str(bundle), "--home", str(root), "--port", str(port), *extra]
        self.proc = subprocess.Popen(
            cmd, cwd=root, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode()[-2000:])
            try:
                if httpx.get(self.url + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        self.baseline = self.memory()["VmRSS"]
        self.peak_tmp = 0
        self._watch = True
        threading.Thread(target=self._watch_tmp, daemon=True).start()

    def _watch_tmp(self) -> None:
        """The bytes the server holds in temporary files: named ones, and unlinked ones it keeps open."""
        while self._watch:
            size = sum(f.stat().st_size for f in self.tmp.rglob("*") if f.is_file())
            for fd in Path(f"/proc/{self.proc.pid}/fd").glob("*"):
                try:
                    if os.readlink(fd).startswith(str(self.tmp)):
                        size += os.stat(fd).st_size
                except OSError:
                    continue
            self.peak_tmp = max(self.peak_tmp, size)
            time.sleep(0.01)

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM of the server process, in MiB."""
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) // 1024
        return out

    def stop(self) -> dict[str, int]:
        mem = self.memory()
        self._watch = False
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        return mem


def probe(root: Path, bundle: Path, env: dict, extra: list[str], send) -> dict:  # type: ignore[no-untyped-def]
    server = Server(root, bundle, env, extra)
    try:
        t0 = time.perf_counter()
        status, detail = send(server)
        seconds = time.perf_counter() - t0
    finally:
        mem = server.stop()
    return {
        "status": status,
        "detail": detail[:200],
        "seconds": round(seconds, 2),
        "rss_after_start_mib": server.baseline,
        "peak_rss_mib": mem["VmHWM"],
        "peak_tmp_bytes": server.peak_tmp,
    }


def _post_files(files: list[tuple[str, bytes]]):  # type: ignore[no-untyped-def]
    def send(server: Server) -> tuple[int, str]:
        body = [("files", (name, data, "application/octet-stream")) for name, data in files]
        r = httpx.post(
            server.url + "/api/samples",
            data={"name": "probe"},
            files=body,
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=600,
        )
        return r.status_code, r.text

    return send


def _anonymous(size: int):  # type: ignore[no-untyped-def]
    def send(server: Server) -> tuple[int, str]:
        boundary = "x" * 20
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'.encode()
        )

        tail = f"\r\n--{boundary}--\r\n".encode()

        def body():  # type: ignore[no-untyped-def]
            yield head
            chunk = b"\0" * (1 << 20)
            for _ in range(size >> 20):
                yield chunk
            yield tail

        try:
            r = httpx.post(
                server.url + "/api/samples",
                content=body(),
                headers={
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                    "Content-Length": str(len(head) + size + len(tail)),
                },
                timeout=600,
            )
            return r.status_code, r.text
        except httpx.HTTPError as exc:  # the server may close the connection instead of reading 200 MiB
            return 0, f"connection closed by the server ({type(exc).__name__})"

    return send


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=None, help="run the server from this src folder (another checkout)")
    ap.add_argument(
        "--bundle", default=None, help="a bundle the server can load (default: a tiny one made here)"
    )
    ap.add_argument("--label", default=None)
    ap.add_argument("--out", default="benchmarks/results/serve_memory.json")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve())
    tmp = Path(tempfile.mkdtemp(prefix="lablens-mem-"))
    bundle = Path(args.bundle) if args.bundle else _bundle(tmp / "bundle")
    png, tiff = _big_png(), _float_tiff()
    big = [(f"field_{i:02d}.png", png) for i in range(40)]
    newer = args.src is None
    probes = {
        "big_pngs": ([], _post_files(big)),
        "float_tiff": ([], _post_files([("float.tif", tiff)])),
        "anonymous_upload": ([], _anonymous(200 << 20)),
    }
    if newer:
        probes["big_pngs_all_admitted"] = (["--max-request-megapixels", "2000"], _post_files(big))
    results = {}
    for name, (extra, send) in probes.items():
        results[name] = probe(tmp / name, bundle, env, extra, send)
        r = results[name]
        print(
            f"{name:24s} status {r['status']:3d}  peak RSS {r['peak_rss_mib']:5d} MiB (after start "
            f"{r['rss_after_start_mib']} MiB)  temp files ≤ {r['peak_tmp_bytes'] / 2**20:7.1f} MiB  {r['seconds']:6.1f} s"
        )
    doc = {
        "benchmark": "serve_memory",
        "code": args.label or (args.src or "this checkout"),
        "png_bytes": len(png),
        "tiff_bytes": len(tiff),
        "probes": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(f"→ {out}")


if __name__ == "__main__":
    main()
