"""A class-conditional GAN on the one engine: generator and discriminator, two optimisers, hinge loss, DiffAugment.

Per step the discriminator learns to tell the (augmented) real batch from an (augmented) generated batch of the
same classes, then the generator learns to fool it. Noise and augmentation draws come from the step's seed, so a
resumed run replays them. The engine averages the generator's weights (EMA) and keeps the epoch whose samples
are closest to held-out real images of the training partition (KID on fixed features, ``val_loss``) — never an
image of the run's validation or test partition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lablens.config import TrainingSettings
from lablens.train.diffaugment import diff_augment
from lablens.train.order import mix_seed
from lablens.train.tasks.base import Batch, Predict, StepContext, Task

#: salt of the per-step noise and augmentation draws
SALT = 6007

Features = Callable[[np.ndarray], np.ndarray]


def sample_images(
    generator: torch.nn.Module, labels: np.ndarray, seed: int, batch_size: int = 64
) -> np.ndarray:
    """``N×S×S×3`` uint8 images of classes ``labels`` (indices); the same ``seed`` gives the same images."""
    device = next(generator.parameters()).device
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(len(labels), generator.z_dim, generator=g)
    out = []
    generator.eval()
    with torch.inference_mode():
        for i in range(0, len(labels), batch_size):
            y = torch.as_tensor(labels[i : i + batch_size], dtype=torch.long, device=device)
            x = generator(z[i : i + batch_size].to(device), y)
            out.append((x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1, 1, 3), np.uint8)


class GANTask(Task):
    """Train ``generator`` against ``discriminator``; ``features`` embeds images for the KID of validation."""

    model_name = "generator"

    def __init__(
        self,
        generator: torch.nn.Module,
        discriminator: torch.nn.Module,
        features: Features,
        *,
        seed: int = 0,
        kid: Callable[[np.ndarray, np.ndarray], float] | None = None,
    ) -> None:
        super().__init__({"generator": generator, "discriminator": discriminator})
        self.features, self.seed, self.kid = features, seed, kid

    def optimizers(self, settings: TrainingSettings, lr: float) -> dict[str, torch.optim.Optimizer]:
        """Adam with β₁ = 0.5 for each network (the usual GAN setting); no weight decay."""
        return {
            name: torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.999))
            for name, net in self.networks.items()
        }

    def training_step(self, nets: dict[str, Any], batch: Batch, step: StepContext) -> dict[str, torch.Tensor]:
        gen, disc = nets["generator"], nets["discriminator"]
        draws = torch.Generator().manual_seed(mix_seed(self.seed, SALT, batch.step, batch.rank))
        z = torch.randn(len(batch.y), self.model.z_dim, generator=draws).to(batch.x.device)
        with step.autocast():
            fake = gen(z, batch.y)
            real_score = disc(diff_augment(batch.x, draws), batch.y)
            fake_score = disc(diff_augment(fake.detach(), draws), batch.y)
        d_loss = F.relu(1 - real_score.float()).mean() + F.relu(1 + fake_score.float()).mean()
        step.update(d_loss, "discriminator")
        with step.autocast():
            g_loss = -disc(diff_augment(fake, draws), batch.y).float().mean()
        step.update(g_loss, "generator")
        return {"loss": (d_loss + g_loss).detach(), "d": d_loss.detach(), "g": g_loss.detach()}

    def validate(
        self, model: torch.nn.Module, x_val: np.ndarray, y_val: np.ndarray, predict: Predict
    ) -> dict[str, float]:
        """KID between held-out real images and as many generated ones of the same classes (fixed noise)."""
        if self.kid is None:
            raise ValueError("the GAN task validates with a KID function")
        fake = sample_images(model, np.asarray(y_val), seed=mix_seed(self.seed, SALT, -1))
        value = self.kid(self.features(np.asarray(x_val)), self.features(fake))
        return {"val_loss": float(value), "val_kid": float(value)}
