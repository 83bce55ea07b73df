"""The training engine: schedule, selection, exact resume after a crash, and the checks it makes first."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from lablens.config import TrainingSettings
from lablens.models.multitask_net import MultiTaskNet
from lablens.nn.weights import build_network
from lablens.train.context import FitContext
from lablens.train.imbalance import ClassificationLoss
from lablens.train.tasks import BlurMultiTask, BlurSettings, ClassificationTask
from lablens.train.trainer import Trainer, TrainingError, lr_at, score_key

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.drop = torch.nn.Dropout(0.2)  # dropout draws must replay after a resume too
        self.fc = torch.nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.relu(self.conv(x)).flatten(1)))


def _colours(n: int = 60, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    images = rng.integers(0, 40, (n, size, size, 3), dtype=np.uint8)
    for i, c in enumerate(y):
        images[i, :, :, c] += 180
    return images, y


def _settings(**kw: object) -> TrainingSettings:
    base = dict(epochs=4, batch_size=10, lr=5e-3, augment=None, channels_last=False, patience=None, seed=3)
    return TrainingSettings(**{**base, **kw})


def _classification(net: torch.nn.Module) -> ClassificationTask:
    return ClassificationTask(net, 3, ClassificationLoss("weighted", np.ones(3)), MEAN, STD)


class _Crash(Exception):
    pass


def _crash_at(task: object, epoch: int, step_in_epoch: int, steps: int) -> None:
    """Make ``task`` fail like a killed process in the middle of ``epoch``."""
    original = task.training_step  # type: ignore[attr-defined]

    def step(nets, batch, ctx):  # type: ignore[no-untyped-def]
        if batch.step == (epoch - 1) * steps + step_in_epoch:
            raise _Crash
        return original(nets, batch, ctx)

    task.training_step = step  # type: ignore[attr-defined]


def test_lr_schedule_warmup_then_cosine() -> None:
    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == 0.1 and lrs[9] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert 0.01 <= lrs[-1] < 0.02


def test_score_key_prefers_the_monitor_then_the_lower_loss() -> None:
    a = {"val_macro_f1": 0.9, "val_loss": 0.5, "train_loss": 1.0}
    b = {"val_macro_f1": 0.9, "val_loss": 0.4, "train_loss": 1.0}
    assert score_key(b, "macro_f1") > score_key(a, "macro_f1")
    assert score_key({"train_loss": 0.1}, "macro_f1") > score_key({"train_loss": 0.2}, "macro_f1")


def test_fit_learns_and_keeps_the_best_epoch() -> None:
    images, y = _colours()
    torch.manual_seed(0)
    task = _classification(_Tiny())
    result = Trainer(_settings(epochs=6), FitContext(device="cpu")).fit(
        task, images[:45], y[:45], images[45:], y[45:]
    )
    assert len(result.history) == 6
    best = result.history[result.best_epoch - 1]
    assert best["val_macro_f1"] == max(h["val_macro_f1"] for h in result.history)
    assert result.history[-1]["val_accuracy"] == 1.0
    assert {"train_loss", "val_loss", "train_images_per_s", "lr"} <= set(best)


def _run_with_crash(tmp_path: Path, make_task, images, y, settings) -> tuple[dict, dict, list, list]:  # type: ignore[no-untyped-def]
    """(uninterrupted weights, resumed weights, and both histories) for a crash in epoch 2."""
    torch.manual_seed(0)
    twin = make_task()
    full = Trainer(settings, FitContext(device="cpu")).fit(twin, images[:45], y[:45], images[45:], y[45:])
    ckpt = tmp_path / "ckpt"
    torch.manual_seed(0)
    crashing = make_task()
    _crash_at(crashing, epoch=2, step_in_epoch=2, steps=5)
    with pytest.raises(_Crash):
        Trainer(settings, FitContext(device="cpu", checkpoint_dir=ckpt)).fit(
            crashing, images[:45], y[:45], images[45:], y[45:]
        )
    torch.manual_seed(0)
    fresh = make_task()  # a new process: new objects, state only from the checkpoint
    resumed = Trainer(settings, FitContext(device="cpu", checkpoint_dir=ckpt, resume=True)).fit(
        fresh, images[:45], y[:45], images[45:], y[45:]
    )
    assert resumed.resumed_from == 1
    return twin.model.state_dict(), fresh.model.state_dict(), full.history, resumed.history


def test_resume_after_a_crash_mid_epoch_replays_exactly(tmp_path: Path) -> None:
    images, y = _colours()
    settings = _settings(augment={"rotate": 30.0}, imbalance="sampler")
    a, b, ha, hb = _run_with_crash(tmp_path, lambda: _classification(_Tiny()), images, y, settings)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]


def test_the_blur_multitask_resumes_exactly_on_the_same_engine(tmp_path: Path) -> None:
    images, y = _colours(size=32)

    def make() -> BlurMultiTask:
        backbone, _ = build_network("test_efficientnet", "scratch", 3)
        net = MultiTaskNet(backbone, 32)
        blur = BlurSettings(levels=(0, 2), val_levels=(0, 2), noise=0.0, seed=3)
        return BlurMultiTask(
            net, 3, ClassificationLoss("weighted", np.ones(3)), MEAN, STD, blur=blur, tta=True
        )

    a, b, ha, hb = _run_with_crash(tmp_path, make, images, y, _settings(epochs=3, ema=True))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert [h["train_deblur"] for h in ha] == [h["train_deblur"] for h in hb]
    assert {"val_macro_f1_L0", "val_macro_f1_L2", "train_quality"} <= set(ha[-1])


def test_settings_that_cannot_work_are_refused_by_name() -> None:
    images, y = _colours(n=12)
    with pytest.raises(TrainingError, match=r"train\.lr"):
        Trainer(_settings(lr=None))
    bn = torch.nn.Sequential(
        torch.nn.Conv2d(3, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Flatten(), torch.nn.Linear(108, 3)
    )
    with pytest.raises(TrainingError, match="BatchNorm needs at least 2"):
        Trainer(_settings(batch_size=1), FitContext(device="cpu")).fit(_classification(bn), images, y)


def test_gradient_clipping_caps_the_norm_of_every_update() -> None:
    images, y = _colours(n=30)
    norms: dict[float | None, list[float]] = {None: [], 0.05: []}
    for clip in norms:
        torch.manual_seed(0)
        task = _classification(_Tiny())
        original = task.training_step

        def step(nets, batch, ctx, clip=clip, original=original, model=task.model):  # type: ignore[no-untyped-def]
            logs = original(nets, batch, ctx)  # gradients of the update just made stay on the parameters
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            norms[clip].append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
            return logs

        task.training_step = step  # type: ignore[method-assign]
        Trainer(_settings(epochs=1, grad_clip=clip), FitContext(device="cpu")).fit(task, images, y)
    assert max(norms[None]) > 0.05  # without clipping the gradients are larger …
    assert max(norms[0.05]) <= 0.05 * (1 + 1e-5)  # … with it, no update exceeds the cap


def test_validation_predicts_with_the_models_own_tta_policy() -> None:
    """Model selection scores the views prediction will use: adaptive TTA validates adaptively."""
    seen: list[dict[str, object]] = []
    images, y = _colours(12)

    def predict(model: object, x: np.ndarray, **kwargs: object) -> dict[str, np.ndarray]:
        seen.append(kwargs)
        return {"logits": np.eye(3)[y]}

    task = ClassificationTask(
        _Tiny(), 3, ClassificationLoss("weighted", np.ones(3)), MEAN, STD, tta=True, tta_margin=0.5
    )
    scores = task.validate(task.model, images, y, predict)
    assert seen == [{"mean": MEAN, "std": STD, "tta": True, "tta_margin": 0.5}]
    assert scores["val_accuracy"] == 1.0
