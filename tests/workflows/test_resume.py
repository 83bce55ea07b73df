"""A training run killed with SIGKILL during epoch 2 completes with --resume, replaying exactly: the single-task
classifier and the blur multi-task model, both on the one training engine."""

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

from conftest import mil_fields_csv, write_shape_folder

pytestmark = pytest.mark.slow

#: the model's options and its epochs (the multi-task run on blood-cell phantoms, as a user would start it)
MODELS = {
    "test_resnet": (["--model", "test_resnet", "--image-size", "64"], 4),
    "multitask": (["--model", "multitask", "--weights", "imagenet", "--image-size", "32"], 3),
}


def _cmd(data: Path | None, out: Path, model: str, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "lablens.cli", "train"]
    if data is not None:
        args.append(str(data))
    options, epochs = MODELS[model]
    return [
        *args,
        "--out",
        str(out),
        *options,
        "--epochs",
        str(epochs),
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


def _data(model: str, root: Path) -> Path:
    if model == "multitask":
        from lablens.phantoms import write_phantoms

        write_phantoms("blood-cells", root, n=120, seed=0, size=48)
        return root
    return write_shape_folder(root, per_class=40, size=64)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_sigkill_during_epoch_two_then_resume(model: str, tmp_path: Path) -> None:
    data = _data(model, tmp_path / "data")
    epochs = MODELS[model][1]
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.safetensors"
    proc = subprocess.Popen(
        _cmd(data, run, model), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
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
        _cmd(None, run, model, "--resume"), env=_env(), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    card = json.loads((run / "bundle" / "card.json").read_text())
    history = card["training"]["history"]
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))

    # an uninterrupted twin run gives the same losses and the same weights: the resume replayed exactly
    twin = tmp_path / "twin"
    full = subprocess.run(_cmd(data, twin, model), env=_env(), capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stdout + full.stderr
    twin_history = json.loads((twin / "bundle" / "card.json").read_text())["training"]["history"]
    for a, b in zip(history, twin_history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    from safetensors.torch import load_file

    w1 = load_file(str(run / "bundle" / "weights.safetensors"))
    w2 = load_file(str(twin / "bundle" / "weights.safetensors"))
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=0, atol=0)  # identical, not merely close


def test_resume_without_run_folder_explains(tmp_path: Path) -> None:
    res = subprocess.run(
        _cmd(None, tmp_path / "nothing", "test_resnet", "--resume"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1
    assert "cannot resume" in res.stdout + res.stderr


def _sample_cmd(fields: Path | None, out: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "lablens.cli", "train"]
    if fields is not None:
        cmd += [str(fields), "--label-level", "sample", "--task", "ana", "--split", "kfold:2"]
        cmd += ["--image-size", "32", "--epochs", "3", "--config", str(fields.parent / "c.yaml")]
    return [*cmd, "--out", str(out), "--device", "cpu", "--quiet", *extra]


def test_sample_level_run_killed_in_its_second_fold_resumes_to_the_same_calls(tmp_path: Path) -> None:
    fields = mil_fields_csv(tmp_path, seed=8, n=48)
    (tmp_path / "c.yaml").write_text(
        "model:\n  params: {model_name: test_resnet, cells_per_bag: 4, bags_per_sample: 2}\n"
        "train: {augment: null, patience: null}\neval: {bootstrap: 20}\n"
    )
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _sample_cmd(fields, run), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.time() + 600
    while True:  # the first fold is finished and the second has checkpointed an epoch: kill it there
        finished = list(run.glob("folds/*/fold_outputs.npz"))
        started = (
            [
                p
                for p in run.glob("folds/*/checkpoints/last.safetensors")
                if p.parents[1] != finished[0].parent
            ]
            if finished
            else []
        )
        if started:
            break
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "exited early"
        assert time.time() < deadline, "the second fold never started"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (run / "metrics.json").exists() and len(list(run.glob("folds/*/fold_outputs.npz"))) == 1

    resumed = subprocess.run(
        _sample_cmd(None, run, "--resume"), env=_env(), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    twin = tmp_path / "twin"
    full = subprocess.run(_sample_cmd(fields, twin), env=_env(), capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stdout + full.stderr
    import pandas as pd

    a, b = (pd.read_csv(r / "predictions.csv", dtype={"sample": str}) for r in (run, twin))
    pd.testing.assert_frame_equal(a, b)  # the same calls and probabilities as a run that was never killed
    assert a["sample"].str.len().eq(3).all()  # ids stay text through the resume
    again = subprocess.run(
        _sample_cmd(None, run, "--resume"), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 1 and "already complete" in again.stdout + again.stderr
