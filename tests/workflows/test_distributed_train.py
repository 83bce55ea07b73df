"""``lablens train --nproc 2 --device cpu``: two gloo processes started by torchrun's agent train one model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lablens.phantoms import write_phantoms

pytestmark = pytest.mark.slow


def test_two_processes_train_one_bundle_written_by_rank_zero(tmp_path: Path) -> None:
    data = tmp_path / "phantoms"
    write_phantoms("blood-cells", data, n=160, seed=0, size=48)
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "lablens.cli",
        "train",
        str(data),
        "--out",
        str(run),
        "--model",
        "test_resnet",
    ]
    cmd += ["--image-size", "32", "--epochs", "2", "--batch-size", "16", "--nproc", "2", "--device", "cpu"]
    res = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.count("bundle:") == 1 and res.stderr.count("epoch 2/2") == 1  # rank 0 alone reports
    card = json.loads((run / "bundle" / "card.json").read_text())
    assert card["training"]["processes"] == 2
    assert [h["epoch"] for h in card["training"]["history"]] == [1, 2]
    assert (run / "report.html").is_file() and (run / "checkpoints" / "last.safetensors").is_file()
    assert not list(tmp_path.glob("run/*rank*"))


def test_a_failure_in_the_processes_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "disc").mkdir(parents=True)
    (empty / "disc" / "notes.txt").write_text("not an image")
    cmd = [sys.executable, "-m", "lablens.cli", "train", str(empty), "--out", str(tmp_path / "r"), "-q"]
    cmd += ["--model", "test_resnet", "--nproc", "2", "--device", "cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 1
    text = " ".join((res.stdout + res.stderr).split())
    assert text.startswith("error:") and "no usable image" in text, text  # found by the processes, told once
    assert "Traceback" not in text and not (tmp_path / "r").exists()
    odd = subprocess.run([*cmd[:-4], "--batch-size", "3", "--nproc", "2"], capture_output=True, text=True)
    assert "train.batch_size 3 must be a multiple of the 2 processes" in " ".join(odd.stderr.split())
