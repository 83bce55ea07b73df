"""The throughput benchmark runs on a CPU and writes its figures (values are not asserted: speed is not a test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_throughput_writes_epoch_ceiling_and_ratio(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--device", "cpu", "--n", "48"]
    cmd += ["--image-size", "32", "--models", "test_resnet", "--epochs", "1", "--steps", "2", "--warmup", "1"]
    cmd += ["--batch-size", "16", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(out.read_text())
    (run,) = doc["runs"]
    assert run["model"] == "test_resnet" and run["compile"] is False
    assert run["epoch_images_per_s"] > 0 and run["ceiling_images_per_s"] > 0
    assert run["ratio"] == pytest.approx(run["epoch_images_per_s"] / run["ceiling_images_per_s"])
    assert "ratio" in res.stdout and doc["device"] == "cpu"
