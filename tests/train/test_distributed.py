"""Data-parallel training in two gloo processes started by torchrun's agent (what ``--nproc 2`` does).

Each worker trains the same tiny task on its shard; the test checks that the ranks end with identical
parameters, that their shards are disjoint and cover the data, and that validation predictions gathered across
the ranks equal a single-process evaluation of the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

from lablens.config import TrainingSettings
from lablens.nn.network import run_network
from lablens.train import distributed as D
from lablens.train.context import FitContext
from lablens.train.imbalance import ClassificationLoss
from lablens.train.order import shard_owner
from lablens.train.tasks import ClassificationTask
from lablens.train.trainer import Trainer

pytestmark = pytest.mark.slow
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
SEED = 7


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(61) % 3  # an odd count: the shards differ in size
    x = rng.integers(0, 60, (61, 12, 12, 3), dtype=np.uint8)
    for i, c in enumerate(y):
        x[i, 2:10, 2:10, c] += 150
    return x, y


def _net() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3),
        torch.nn.BatchNorm2d(6),  # per-rank statistics: rank 0's are shared before every evaluation
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(24, 3),
    )


def _worker() -> dict:
    env = D.env_from_torchrun()
    x, y = _data()
    with D.process_group(env, torch.device("cpu")):
        settings = TrainingSettings(
            epochs=2, batch_size=8, lr=1e-2, augment={"rotate": 20.0}, channels_last=False, seed=SEED
        )
        task = ClassificationTask(_net(), 3, ClassificationLoss("weighted", np.ones(3)), MEAN, STD)
        trainer = Trainer(settings, FitContext(device="cpu", dist=env))
        result = trainer.fit(task, x[:45], y[:45], x[45:], y[45:])
        gathered = trainer.predict(task.model, x, mean=MEAN, std=STD)["logits"]
        state = {k: v.clone() for k, v in task.model.state_dict().items()}
        return {
            "rank": env.rank,
            "world": env.world_size,
            "shard": np.flatnonzero(shard_owner(45, env.world_size, SEED) == env.rank).tolist(),
            "state": state,
            "history": result.history,
            "gathered": gathered,
        }


def test_two_processes_agree_shard_and_gather_like_one() -> None:
    out = D.launch(2, _worker, ())
    r0, r1 = out[0], out[1]
    assert (r0["rank"], r1["rank"], r0["world"]) == (0, 1, 2)
    for k in r0["state"]:  # identical parameters (and BatchNorm statistics) on both ranks
        torch.testing.assert_close(r0["state"][k], r1["state"][k], rtol=0, atol=0)
    assert set(r0["shard"]).isdisjoint(r1["shard"]) and set(r0["shard"]) | set(r1["shard"]) == set(range(45))
    assert [h["val_loss"] for h in r0["history"]] == [h["val_loss"] for h in r1["history"]]
    # predictions gathered across the ranks == one process predicting everything with the same weights
    x, y = _data()
    net = _net()
    net.load_state_dict(r0["state"])
    single = run_network(net, x, mean=MEAN, std=STD, device=torch.device("cpu"))["logits"]
    np.testing.assert_allclose(r0["gathered"], single, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(r0["gathered"], r1["gathered"])
    labels = [0, 1, 2]
    np.testing.assert_array_equal(
        confusion_matrix(y, r0["gathered"].argmax(1), labels=labels),
        confusion_matrix(y, single.argmax(1), labels=labels),
    )
