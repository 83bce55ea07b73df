"""A class-conditional denoising diffusion model (DDPM, Ho et al. 2020) on the one engine, sampled with DDIM.

Per step: a timestep and Gaussian noise per image (drawn from the step's seed, so a resumed run replays
them), the image noised by the DDPM schedule, and the denoiser learns to predict the noise (mean squared
error). Images are turned by a random flip/rotation first (cells have no up or down). Sampling runs the
deterministic DDIM sampler (η = 0) from seeded noise: the same seed gives the same images.

**Early stopping against memorisation.** Each epoch generates as many images as the held-out slice of the
training partition has (at most :data:`MAX_VALIDATION`), of the same classes, and scores them twice: KID against the held-out images
(``val_kid``) and the share of generated images the nearest-neighbour check flags against the images the
model trains on (``val_memorised``, :mod:`lablens.synth.memorisation`). ``val_loss`` is the KID, plus a penalty
of ``1 + val_memorised`` when more than :data:`MAX_MEMORISED` of the images are flagged: an epoch that hands back
training images is never kept over one that does not, and patience stops training once it only gets worse.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler

from lablens.synth.memorisation import memorisation_check, pixel_features
from lablens.train.order import mix_seed
from lablens.train.tasks.base import Batch, Predict, StepContext, Task

#: salt of the per-step noise, timestep and flip draws
SALT = 7121
#: share of flagged samples above which an epoch is penalised
MAX_MEMORISED = 0.05
TRAIN_TIMESTEPS = 1000
#: most held-out images an epoch's validation generates and compares
MAX_VALIDATION = 64

Features = Callable[[np.ndarray], np.ndarray]


def noise_schedule() -> DDPMScheduler:
    """The training schedule: 1000 steps, cosine noise levels (better than linear at small image sizes)."""
    return DDPMScheduler(num_train_timesteps=TRAIN_TIMESTEPS, beta_schedule="squaredcos_cap_v2")


def ddim_sample(
    denoiser: torch.nn.Module, labels: np.ndarray, seed: int, steps: int = 50, batch_size: int = 64
) -> np.ndarray:
    """``N×S×S×3`` uint8 images of classes ``labels`` (indices) by DDIM (η = 0) from seeded noise."""
    device = next(denoiser.parameters()).device
    size = denoiser.image_size
    g = torch.Generator().manual_seed(int(seed))
    start = torch.randn(len(labels), 3, size, size, generator=g)
    sampler = DDIMScheduler.from_config(noise_schedule().config)
    sampler.set_timesteps(steps)
    out = []
    denoiser.eval()
    with torch.inference_mode():
        for i in range(0, len(labels), batch_size):
            x = start[i : i + batch_size].to(device)
            y = torch.as_tensor(labels[i : i + batch_size], dtype=torch.long, device=device)
            for t in sampler.timesteps:
                eps = denoiser(x, t.expand(len(x)).to(device), y)
                x = sampler.step(eps, t, x, eta=0.0).prev_sample
            img = ((x.clamp(-1, 1) + 1) * 127.5).round().byte()
            out.append(img.permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, size, size, 3), np.uint8)


def _turn(x: torch.Tensor, draws: torch.Generator) -> torch.Tensor:
    """Each image flipped and rotated by one of the 8 symmetries of the square, drawn from ``draws``."""
    k = torch.randint(0, 8, (len(x),), generator=draws)
    out = x.clone()
    for view in k.unique().tolist():
        rows = (k == view).nonzero().flatten().to(x.device)
        turned = torch.rot90(x[rows], view % 4, dims=(2, 3))
        out[rows] = turned.flip(3) if view >= 4 else turned
    return out


class DiffusionTask(Task):
    """Train ``denoiser`` to predict noise; validate by KID and the memorisation check (see module docstring).

    Args:
        denoiser: a :class:`~lablens.models.diffusion_net.ClassDenoiser`.
        features: embeds images for the KID of validation.
        x_train: the images the model trains on (for the memorisation check).
        kid: KID of two feature sets.
        sample_steps: DDIM steps of the validation samples.
    """

    model_name = "denoiser"

    def __init__(
        self,
        denoiser: torch.nn.Module,
        features: Features,
        x_train: np.ndarray,
        *,
        kid: Callable[[np.ndarray, np.ndarray], float],
        seed: int = 0,
        sample_steps: int = 25,
    ) -> None:
        super().__init__({"denoiser": denoiser})
        self.features, self.kid, self.seed, self.sample_steps = features, kid, seed, sample_steps
        self.reference = pixel_features(x_train)
        self.schedule = noise_schedule()

    def training_step(self, nets: dict, batch: Batch, step: StepContext) -> dict[str, torch.Tensor]:
        draws = torch.Generator().manual_seed(mix_seed(self.seed, SALT, batch.step, batch.rank))
        x0 = _turn(batch.x, draws) * 2 - 1
        noise = torch.randn(x0.shape, generator=draws).to(x0.device)
        t = torch.randint(0, TRAIN_TIMESTEPS, (len(x0),), generator=draws).to(x0.device)
        noisy = self.schedule.add_noise(x0, noise, t)
        with step.autocast():
            pred = nets["denoiser"](noisy, t, batch.y)
        loss = F.mse_loss(pred.float(), noise)
        step.update(loss)
        return {"loss": loss.detach()}

    def validate(
        self, model: torch.nn.Module, x_val: np.ndarray, y_val: np.ndarray, predict: Predict
    ) -> dict[str, float]:
        if len(x_val) > MAX_VALIDATION:  # sampling is the cost of an epoch's validation: a fixed subset
            keep = np.sort(np.random.default_rng(self.seed).choice(len(x_val), MAX_VALIDATION, replace=False))
            x_val, y_val = np.asarray(x_val)[keep], np.asarray(y_val)[keep]
        fake = ddim_sample(
            model, np.asarray(y_val), seed=mix_seed(self.seed, SALT, -1), steps=self.sample_steps
        )
        value = float(self.kid(self.features(np.asarray(x_val)), self.features(fake)))
        flagged = memorisation_check(self.reference, pixel_features(fake))
        memorised = float(np.mean([n.flagged for n in flagged]))
        penalty = 1.0 + memorised if memorised > MAX_MEMORISED else 0.0
        return {"val_loss": value + penalty, "val_kid": value, "val_memorised": memorised}
