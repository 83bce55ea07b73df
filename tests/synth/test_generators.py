"""Every registered image generator (GAN, diffusion): the estimator contract, class-conditional samples that
replay by seed, a bundle round trip, and a training that continues after an interruption exactly as if it had
not stopped. The diffusion task's early stopping against memorisation is checked with samples that copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from lablens.errors import ParamError
from lablens.infer.bundle import BundleError
from lablens.progress import SilentProgress
from lablens.synth import diffusion_task as diffusion_task
from lablens.synth.base import ImageGenerator
from lablens.synth.registry import create_generator, list_generators, load_generator
from lablens.train.context import FitContext

from conftest import shape_image

LABELS = np.array(["disc", "ring", "square"] * 8)


def _images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([shape_image(c, rng, 32) for c in LABELS])


#: one tiny configuration per registered generator; a family registered without one fails the suite
TINY: dict[str, dict] = {
    "gan": dict(width=8, z_dim=16, batch_size=8),
    "diffusion": dict(width=8, batch_size=8, sample_steps=4, patience=None),
}


def _make(name: str, epochs: int = 3) -> ImageGenerator:
    return create_generator(name, image_size=32, epochs=epochs, kid_features="pixels", **TINY[name])


def test_every_registered_generator_is_checked() -> None:
    assert sorted(TINY) == list_generators()


@pytest.mark.parametrize("name", sorted(TINY))
def test_the_estimator_contract(name: str) -> None:
    gen = _make(name)
    assert clone(gen).get_params() == gen.get_params()
    assert not [k for k in vars(gen) if k.endswith("_")]  # __init__ only stores parameters
    assert gen.fit(_images(), LABELS, context=FitContext(device="cpu")) is gen
    assert list(gen.classes_) == ["disc", "ring", "square"]
    with pytest.raises(ParamError, match=f"generator '{name}': no setting 'colour'"):
        create_generator(name, colour="red")
    with pytest.raises(ValueError, match="trains on 32×32 images"):
        _make(name).fit(_images()[:, :16, :16], LABELS)


class _StopAfter(SilentProgress):
    """A progress sink that interrupts training after the epoch line of ``epoch`` (a kill, as far as the run
    can tell: only the checkpoint survives)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def log(self, message: str) -> None:
        if message.startswith(f"epoch {self.epoch}/"):
            raise KeyboardInterrupt


@pytest.mark.parametrize("name", sorted(TINY))
def test_samples_replay_by_seed_and_survive_a_bundle_round_trip(name: str, tmp_path: Path) -> None:
    gan = _make(name).fit(_images(), LABELS, context=FitContext(device="cpu"))
    a = gan.sample(["ring", "disc", "ring"], seed=7)
    assert a.shape == (3, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, gan.sample(["ring", "disc", "ring"], seed=7))
    assert not np.array_equal(a, gan.sample(["ring", "disc", "ring"], seed=8))
    digest = gan.save(tmp_path / "g")
    again, loaded_digest = load_generator(tmp_path / "g")
    assert type(again) is type(gan) and again.get_params() == gan.get_params()
    assert loaded_digest == digest and list(again.classes_) == ["disc", "ring", "square"]
    np.testing.assert_array_equal(again.sample(["ring", "disc", "ring"], seed=7), a)
    with pytest.raises(ValueError, match="'blast' is not one the generator learned"):
        gan.sample(["blast"], seed=0)
    other = _classifier_like(tmp_path)
    with pytest.raises(BundleError, match="not a generator bundle"):
        load_generator(other)
    with pytest.raises(BundleError, match=f"not a {name} generator bundle"):
        type(gan).load(other)


def _classifier_like(tmp_path: Path) -> Path:
    from lablens.infer.bundle import BUNDLE_SCHEMA, write_bundle_files

    write_bundle_files(tmp_path / "other", {"w": np.zeros(2)}, {"schema": BUNDLE_SCHEMA, "detector": {}})
    return tmp_path / "other"


@pytest.mark.parametrize("name", sorted(TINY))
def test_an_interrupted_training_resumes_to_the_same_generator(name: str, tmp_path: Path) -> None:
    X = _images()
    whole = _make(name).fit(X, LABELS, context=FitContext(device="cpu"))
    ckpt = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        _make(name).fit(
            X, LABELS, context=FitContext(device="cpu", checkpoint_dir=ckpt, progress=_StopAfter(2))
        )
    resumed = _make(name).fit(X, LABELS, context=FitContext(device="cpu", checkpoint_dir=ckpt, resume=True))
    assert (
        resumed.resumed_from_ == 1
    )  # the epoch-2 line comes before its checkpoint: epoch 1 is the last saved
    np.testing.assert_array_equal(
        resumed.sample(["disc", "square"], seed=1), whole.sample(["disc", "square"], seed=1)
    )


def test_diffusion_epochs_whose_samples_copy_training_images_are_never_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    X = _images()
    gen = _make("diffusion")
    task, _ = gen.task(3, diffusion_task.pixel_features, X[:18])
    y = np.searchsorted(["disc", "ring", "square"], LABELS[18:])
    monkeypatch.setattr(diffusion_task, "ddim_sample", lambda *a, **k: X[18:])  # new images of the classes
    fresh = task.validate(task.model, X[18:], y, predict=None)
    assert fresh["val_memorised"] == 0.0 and fresh["val_loss"] == fresh["val_kid"]
    monkeypatch.setattr(diffusion_task, "ddim_sample", lambda *a, **k: X[:6])  # hands back training images
    copies = task.validate(task.model, X[18:], y, predict=None)
    assert copies["val_memorised"] == 1.0
    assert copies["val_loss"] == pytest.approx(copies["val_kid"] + 2.0)
    assert copies["val_loss"] > fresh["val_loss"]


def test_the_epoch_picking_hold_out_spares_rare_classes() -> None:
    from lablens.synth.base import holdout_rows

    y = np.array(["common"] * 40 + ["rare"] * 8)
    groups = np.array([f"c{i // 2}" for i in range(40)] + [f"r{i}" for i in range(8)])
    train, held = holdout_rows(y, groups, seed=0)
    assert len(held) == 4 and set(y[held]) == {"common"}  # 2 of the 20 common groups
    assert set(np.flatnonzero(y == "rare")) <= set(train)
    assert sorted([*train, *held]) == list(range(48)) and not set(groups[train]) & set(groups[held])
    few = holdout_rows(y[:16], groups[:16], seed=0)  # 8 groups: nothing held out
    assert len(few[1]) == 0 and len(few[0]) == 16
