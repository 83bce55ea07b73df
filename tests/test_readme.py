"""The manual's service commands (docs/service.md), run as written from inside the repository, leave ``git status`` unchanged:
the database, the images and the audit key go to the per-user lablens folder, never into the clone."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import shape_image, tiny_bundle

ROOT = Path(__file__).resolve().parents[1]


def _block(title: str, page: str = "docs/service.md") -> list[str]:
    """The command lines (continuations joined) of the first bash block after the heading ``title`` of ``page``."""
    text = (ROOT / page).read_text(encoding="utf-8")
    after = text[text.index(title) :]
    block = re.search(r"```bash\n(.*?)```", after, re.S)
    assert block is not None, f"no bash block after {title!r}"
    return block.group(1).replace("\\\n", " ").splitlines()


def _git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.slow
def test_the_readme_service_commands_write_nothing_into_the_clone(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout of lablens")
    home = tmp_path / "home"
    tiny_bundle(home / "lablens-runs" / "pbc" / "bundle")
    env = {k: v for k, v in os.environ.items() if k not in ("LABLENS_HOME", "XDG_DATA_HOME")}
    env["HOME"] = str(home)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing of its own in the clone either
    lablens = f"{shlex.quote(sys.executable)} -m lablens.cli"
    before = _git_status()
    tokens: dict[str, str] = {}
    ran = []
    for line in _block("## Review service and screen"):
        line = re.sub(r"\s+#.*$", "", line.strip())  # the trailing comment
        if not line.startswith(("lablens ", "mkdir ")):
            continue  # comments and curl (the submission is made below with httpx)
        command = re.sub(r"(^|&& )lablens ", rf"\g<1>{lablens} ", line)
        if " serve " in f" {line} ":
            port = _port()
            server = subprocess.Popen(
                f"exec {command} --port {port}", shell=True, cwd=ROOT, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            try:
                _submit(f"http://127.0.0.1:{port}", tokens["tina"], server)
            finally:
                server.terminate()
                server.wait(30)
        else:
            done = subprocess.run(command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
            if " add-user " in line:
                tokens[line.split()[2]] = done.stdout.strip().splitlines()[-1]
        ran.append(line.split()[1])
    assert {"add-user", "serve", "users", "audit", "export-reviews"} <= set(ran), ran
    assert _git_status() == before  # nothing new in the clone, not even an ignored file
    data = home / ".local" / "share" / "lablens"
    assert (data / "lablens.db").is_file() and (data / "audit.key").is_file()
    assert any((data / "images").rglob("*.png"))


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _submit(url: str, token: str, server: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """What the README's curl line does: a sample of two cells, once the server answers."""
    import io

    import numpy as np
    from PIL import Image

    deadline = time.time() + 120
    while True:
        if server.poll() is not None:
            raise AssertionError(f"serve exited: {server.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    rng = np.random.default_rng(0)
    files = []
    for i, label in enumerate(("disc", "ring")):
        buf = io.BytesIO()
        Image.fromarray(shape_image(label, rng, 32)).save(buf, format="PNG")
        files.append(("files", (f"cell{i + 1}.png", buf.getvalue(), "image/png")))
    r = httpx.post(
        url + "/api/samples",
        data={"name": "S-0412"},
        files=files,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text
