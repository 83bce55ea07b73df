from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lablens.train.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state


def test_roundtrip_of_model_and_optimizer_state(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.AdamW(net.parameters(), lr=0.01, betas=(0.8, 0.95))
    net(torch.randn(5, 4)).sum().backward()
    opt.step()
    state = {
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "loop": {"epoch": 3, "best": [0.5, -1.0], "history": [{"epoch": 1, "loss": 0.25}], "flag": None},
    }
    save_checkpoint(tmp_path / "c.safetensors", state)
    back = load_checkpoint(tmp_path / "c.safetensors")
    assert back["loop"] == state["loop"]
    for k, v in state["model"].items():
        torch.testing.assert_close(back["model"][k], v)
    opt2 = torch.optim.AdamW(net.parameters(), lr=0.5)
    opt2.load_state_dict(back["optimizer"])
    assert opt2.param_groups[0]["lr"] == 0.01
    assert tuple(opt2.param_groups[0]["betas"]) == (0.8, 0.95)
    torch.testing.assert_close(
        opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )


def test_int_keys_survive() -> None:
    tensors, skel = flatten_state({1: torch.ones(2), "a": {2: "x"}})
    back = unflatten_state(tensors, skel)
    assert set(back) == {1, "a"} and back["a"] == {2: "x"}


def test_unsupported_value_rejected() -> None:
    with pytest.raises(TypeError):
        flatten_state({"f": object()})


def test_not_a_checkpoint(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="not a lablens checkpoint"):
        load_checkpoint(tmp_path / "plain.safetensors")
