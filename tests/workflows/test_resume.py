"""A training run killed with SIGKILL during epoch 2 completes with --resume, replaying exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lablens.train.checkpoint import load_checkpoint

from conftest import write_shape_folder

pytestmark = pytest.mark.slow

EPOCHS = 4


def _cmd(data: Path | None, out: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "lablens.cli", "train"]
    if data is not None:
        args.append(str(data))
    return [
        *args,
        "--out",
        str(out),
        "--model",
        "test_resnet",
        "--image-size",
        "64",
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_sigkill_during_epoch_two_then_resume(tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "data", per_class=40, size=64)
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.safetensors"
    proc = subprocess.Popen(_cmd(data, run), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while not last.exists():  # epoch 1 finished when its checkpoint appears; epoch 2 starts at once
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "exited early"
        assert time.time() < deadline, "epoch 1 never finished"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    state = load_checkpoint(last)
    assert state["loop"]["epoch"] == 1, "the kill must land during epoch 2"
    assert not (run / "bundle").exists()

    resumed = subprocess.run(
        _cmd(None, run, "--resume"), env=_env(), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    card = json.loads((run / "bundle" / "card.json").read_text())
    history = card["training"]["history"]
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))

    # an uninterrupted twin run gives the same losses and the same weights: the resume replayed exactly
    twin = tmp_path / "twin"
    full = subprocess.run(_cmd(data, twin), env=_env(), capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stdout + full.stderr
    twin_history = json.loads((twin / "bundle" / "card.json").read_text())["training"]["history"]
    for a, b in zip(history, twin_history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    from safetensors.torch import load_file

    w1 = load_file(str(run / "bundle" / "weights.safetensors"))
    w2 = load_file(str(twin / "bundle" / "weights.safetensors"))
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-4, atol=1e-5)


def test_resume_without_run_folder_explains(tmp_path: Path) -> None:
    res = subprocess.run(
        _cmd(None, tmp_path / "nothing", "--resume"), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 1
    assert "cannot resume" in res.stdout + res.stderr
