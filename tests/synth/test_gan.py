"""The GAN generator: class-conditional samples that replay by seed, a bundle round trip, and a training that
continues after an interruption exactly as if it had not stopped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lablens.infer.bundle import BundleError
from lablens.progress import SilentProgress
from lablens.synth.gan import GANGenerator
from lablens.train.context import FitContext

from conftest import shape_image

LABELS = np.array(["disc", "ring", "square"] * 8)


def _images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([shape_image(c, rng, 32) for c in LABELS])


def _gan(epochs: int = 3) -> GANGenerator:
    return GANGenerator(image_size=32, width=8, z_dim=16, epochs=epochs, batch_size=8, kid_features="pixels")


class _StopAfter(SilentProgress):
    """A progress sink that interrupts training after the epoch line of ``epoch`` (a kill, as far as the run
    can tell: only the checkpoint survives)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def log(self, message: str) -> None:
        if message.startswith(f"epoch {self.epoch}/"):
            raise KeyboardInterrupt


def test_samples_replay_by_seed_and_survive_a_bundle_round_trip(tmp_path: Path) -> None:
    gan = _gan().fit(_images(), LABELS, context=FitContext(device="cpu"))
    a = gan.sample(["ring", "disc", "ring"], seed=7)
    assert a.shape == (3, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, gan.sample(["ring", "disc", "ring"], seed=7))
    assert not np.array_equal(a, gan.sample(["ring", "disc", "ring"], seed=8))
    digest = gan.save(tmp_path / "g")
    again, loaded_digest = GANGenerator.load(tmp_path / "g")
    assert loaded_digest == digest and list(again.classes_) == ["disc", "ring", "square"]
    np.testing.assert_array_equal(again.sample(["ring", "disc", "ring"], seed=7), a)
    with pytest.raises(ValueError, match="'blast' is not one the generator learned"):
        gan.sample(["blast"], seed=0)
    with pytest.raises(BundleError, match="not a GAN generator bundle"):
        GANGenerator.load(_classifier_like(tmp_path))


def _classifier_like(tmp_path: Path) -> Path:
    from lablens.infer.bundle import BUNDLE_SCHEMA, write_bundle_files

    write_bundle_files(tmp_path / "other", {"w": np.zeros(2)}, {"schema": BUNDLE_SCHEMA, "detector": {}})
    return tmp_path / "other"


def test_an_interrupted_training_resumes_to_the_same_generator(tmp_path: Path) -> None:
    X = _images()
    whole = _gan().fit(X, LABELS, context=FitContext(device="cpu"))
    ckpt = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        _gan().fit(X, LABELS, context=FitContext(device="cpu", checkpoint_dir=ckpt, progress=_StopAfter(2)))
    resumed = _gan().fit(X, LABELS, context=FitContext(device="cpu", checkpoint_dir=ckpt, resume=True))
    assert (
        resumed.resumed_from_ == 1
    )  # the epoch-2 line comes before its checkpoint: epoch 1 is the last saved
    np.testing.assert_array_equal(
        resumed.sample(["disc", "square"], seed=1), whole.sample(["disc", "square"], seed=1)
    )
