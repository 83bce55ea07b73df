"""A field detector learned from the lab's own boxes (``lablens train-detector``): CenterNet on a timm backbone.

Where no hand-made rule finds the objects well — whole cells of cytoplasmic IIF patterns, whose nuclei are dark
and whose bodies touch — the lab's annotated fields teach a detector instead. Fields are resampled to one working
scale (``work_um_per_px``, so a model serves every camera and magnification), cut into overlapping tiles and
trained on the one training engine (:class:`~lablens.fields.centre_task.CentreTask`). At detection a whole field
is run at once and objects are read from the centre map (:func:`~lablens.fields.centres.decode`).

The trained detector is a bundle (``weights.safetensors`` + ``card.json``, no pickle) that ``lablens analyze
--detector`` and ``create_detector("learned", bundle=…)`` use.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.model_selection import GroupShuffleSplit

from lablens.config import TrainingSettings
from lablens.errors import SettingError
from lablens.fields.centres import centre_targets, decode
from lablens.fields.detection import Detection, register_detector
from lablens.fields.geometry import touches_edge
from lablens.infer.bundle import BUNDLE_SCHEMA, BundleError, read_bundle_files, write_bundle_files
from lablens.models.centre_net import STRIDE, build_centre_net
from lablens.nn.network import Normalizer
from lablens.train.context import FitContext
from lablens.train.trainer import Trainer

NAME = "learned"
#: fields are padded to a multiple of the backbone's coarsest stride used (16) times two
PAD_TO = 32

Boxes = Sequence[Sequence[float]]


@register_detector(NAME)
class LearnedDetector(BaseEstimator):
    """Objects of one kind (``label``) found by a centre-point network trained on annotated fields.

    Args:
        um_per_px: the scale of the fields to detect on (µm per pixel).
        bundle: a trained detector bundle; ``detect`` loads it unless the detector was fitted in this process.
        label: the objects' kind (``cell``, ``nucleus``, ``wbc`` …).
        threshold: smallest centre probability reported as an object.
        model_name, weights: the timm backbone and its initial weights (``imagenet``, ``scratch`` or a file).
        work_um_per_px: the scale fields are resampled to for the network.
        tile: side of the training tiles in working pixels.
        epochs, batch_size, lr, seed: training.
        validation_fraction: share of the fields' groups (samples) held out to select the epoch.
        ignore_regions: ``(x0, y0, x1, y1)`` pixel boxes (scale bar, label) where no object is reported.
    """

    def __init__(
        self,
        um_per_px: float | None = None,
        bundle: str | None = None,
        label: str = "cell",
        threshold: float = 0.3,
        model_name: str = "efficientnet_lite0",
        weights: str = "imagenet",
        work_um_per_px: float = 0.8,
        tile: int = 192,
        epochs: int = 20,
        batch_size: int = 16,
        lr: float = 2e-3,
        seed: int = 0,
        validation_fraction: float = 0.2,
        ignore_regions: Sequence[Sequence[int]] = (),
    ) -> None:
        self.um_per_px = um_per_px
        self.bundle = bundle
        self.label = label
        self.threshold = threshold
        self.model_name = model_name
        self.weights = weights
        self.work_um_per_px = work_um_per_px
        self.tile = tile
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.validation_fraction = validation_fraction
        self.ignore_regions = ignore_regions

    # -- training -----------------------------------------------------------------------------------------
    def fit(
        self,
        X: Sequence[np.ndarray],
        y: Sequence[Boxes],
        *,
        um_per_px: float | Sequence[float] | None = None,
        groups: Sequence[str] | None = None,
        context: FitContext | None = None,
    ) -> LearnedDetector:
        """Train on fields ``X`` (``H×W×3`` uint8, any sizes) with their object boxes ``y`` (``x0, y0, x1, y1``
        pixels); ``um_per_px`` per field or one for all (default: the detector's); ``groups`` (a field's sample)
        keep a sample's fields on one side of the validation split."""
        from lablens.fields.centre_task import CentreTask

        if len(X) != len(y):
            raise ValueError(f"{len(X)} fields but {len(y)} box lists")
        if not X:
            raise SettingError("no annotated fields to train on")
        scale = self.um_per_px if um_per_px is None else um_per_px
        scales = [scale] * len(X) if scale is None or np.isscalar(scale) else list(scale)  # type: ignore[arg-type]
        if any(not s or float(s) <= 0 for s in scales):
            raise SettingError("the learned detector needs each field's scale: give um_per_px (µm per pixel)")
        if self.tile % PAD_TO:
            raise SettingError(f"tile {self.tile} must be a multiple of {PAD_TO}")
        ctx = context or FitContext()
        train_rows, val_rows = self._split(len(X), groups)
        x_tr, t_tr = self._tiles(
            [X[i] for i in train_rows], [y[i] for i in train_rows], [scales[i] for i in train_rows]
        )
        x_va, t_va = (None, None)
        if val_rows:
            x_va, t_va = self._tiles(
                [X[i] for i in val_rows], [y[i] for i in val_rows], [scales[i] for i in val_rows]
            )
        net, info = build_centre_net(self.model_name, self.weights)
        settings = TrainingSettings(
            epochs=self.epochs,
            batch_size=min(self.batch_size, len(x_tr)),
            lr=self.lr,
            weight_decay=1e-4,
            imbalance="none",
            monitor="loss",
            ema_decay=0.99,
            patience=None,
            channels_last=False,
            augment=None,  # the task turns tiles and targets together
            seed=self.seed,
        )
        task = CentreTask(net, t_tr, t_va, info.mean, info.std, seed=self.seed)
        result = Trainer(settings, ctx).fit(
            task,
            x_tr,
            np.zeros(len(x_tr), np.int64),
            x_va,
            None if x_va is None else np.zeros(len(x_va), np.int64),
        )
        self.net_ = task.model.cpu().eval()
        self.model_ = {"arch": info.arch, "mean": list(info.mean), "std": list(info.std), "stride": STRIDE}
        self.training_ = {
            "fields": len(train_rows),
            "validation_fields": len(val_rows),
            "tiles": len(x_tr),
            "objects": int(sum(len(y[i]) for i in train_rows)),
            "best_epoch": result.best_epoch,
            "history": result.history,
            "weights_source": info.weights_source,
        }
        self.validation_rows_ = list(val_rows)
        return self

    def _split(self, n: int, groups: Sequence[str] | None) -> tuple[list[int], list[int]]:
        groups = list(groups) if groups is not None else [str(i) for i in range(n)]
        if self.validation_fraction <= 0 or len(set(groups)) < 5:
            return list(range(n)), []
        split = GroupShuffleSplit(n_splits=1, test_size=self.validation_fraction, random_state=self.seed)
        tr, va = next(split.split(np.zeros(n), groups=groups))
        return sorted(tr.tolist()), sorted(va.tolist())

    def _tiles(
        self, fields: Sequence[np.ndarray], boxes: Sequence[Boxes], scales: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Overlapping ``tile``-px tiles (half a tile apart, covering each field) and their target maps."""
        t, images, targets = self.tile, [], []
        for img, bxs, s in zip(fields, boxes, scales, strict=True):
            f = float(s) / self.work_um_per_px
            work = _pad(_resample(img, f), PAD_TO, minimum=t)
            maps = centre_targets([[v * f for v in b] for b in bxs], work.shape[:2], STRIDE)
            h, w = work.shape[:2]
            for y0 in _starts(h, t):
                for x0 in _starts(w, t):
                    images.append(work[y0 : y0 + t, x0 : x0 + t])
                    sl = np.s_[:, y0 // STRIDE : (y0 + t) // STRIDE, x0 // STRIDE : (x0 + t) // STRIDE]
                    targets.append(maps[sl])
        return np.stack(images), np.stack(targets)

    # -- detection ----------------------------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> list[Detection]:
        if not self.um_per_px or self.um_per_px <= 0:
            raise SettingError("the learned detector needs the field scale: give um_per_px (µm per pixel)")
        net, model, params = self._fitted()
        f = float(self.um_per_px) / float(params["work_um_per_px"])
        h, w = image.shape[:2]
        work = _resample(image, f)
        padded = _pad(work, PAD_TO)
        norm = Normalizer(model["mean"], model["std"])
        x = norm.normalize(norm.to_float(torch.from_numpy(np.ascontiguousarray(padded))[None]))
        with torch.inference_mode():
            maps = net(x)[0].float().numpy()
        boxes, scores = decode(maps, int(model["stride"]), self.threshold)
        out = []
        for (x0, y0, x1, y1), score in zip(boxes / f, scores, strict=True):
            box = (max(0, round(x0)), max(0, round(y0)), min(w, round(x1)), min(h, round(y1)))
            if (
                box[2] <= box[0]
                or box[3] <= box[1]
                or _inside((x0 + x1) / 2, (y0 + y1) / 2, self.ignore_regions)
            ):
                continue  # a centre in the padding, or in a region to leave out
            area = (box[2] - box[0]) * (box[3] - box[1])
            out.append(
                Detection(str(params["label"]), box, float(score), area, {"edge": touches_edge(box, (h, w))})
            )
        return out

    def _fitted(self) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
        """The network, its model record and the training parameters: fitted here, or read from ``bundle``."""
        if hasattr(self, "net_"):
            return self.net_, self.model_, self.get_params()
        if not self.bundle:
            raise SettingError(
                "the learned detector is not trained: give bundle= (a detector bundle from lablens train-detector)"
            )
        net, model, params, _ = _load(*_key(self.bundle))
        return net, model, params

    # -- bundle -------------------------------------------------------------------------------------------
    def save(self, out_dir: str | Path, metrics: dict[str, Any] | None = None) -> str:
        """Write the fitted detector as a bundle; return its hash."""
        if not hasattr(self, "net_"):
            raise ValueError("fit the detector before saving it")
        runtime = ("um_per_px", "bundle", "ignore_regions")  # the fields', not the model's
        params = {k: v for k, v in self.get_params().items() if k not in runtime}
        card = {
            "schema": BUNDLE_SCHEMA,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "detector": {"name": NAME, "params": params, "objects": self.label},
            "model": self.model_,
            "training": {k: v for k, v in self.training_.items() if k != "history"},
            "history": self.training_["history"],
            "metrics": metrics or {},
        }
        _, digest = write_bundle_files(out_dir, self.net_.state_dict(), card)
        return digest


def detector_card(path: str | Path) -> dict[str, Any]:
    """The ``detector`` record of a learned-detector bundle (name, params, objects); BundleError if it is none."""
    return _load(*_key(path))[3]


def _inside(x: float, y: float, regions: Sequence[Sequence[int]]) -> bool:
    return any(x0 <= x < x1 and y0 <= y < y1 for x0, y0, x1, y1 in regions)


def _key(path: str | Path) -> tuple[str, int]:
    """A bundle's cache key: its resolved path and modification time (a replaced bundle is read again)."""
    p = Path(path).resolve()
    try:
        return str(p), p.stat().st_mtime_ns
    except OSError:
        raise BundleError(f"{path}: no such detector bundle") from None


@functools.lru_cache(maxsize=4)
def _load(path: str, stamp: int) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A detector bundle's network (kept: analysis makes one detector per field), model record, parameters and
    detector record."""
    card, tensors, _ = read_bundle_files(path)
    info = card.get("detector") or {}
    if info.get("name") != NAME:
        raise BundleError(f"{path}: not a learned-detector bundle (lablens train-detector writes them)")
    params = dict(info["params"])
    net, _ = build_centre_net(card["model"]["arch"], "scratch")
    try:
        net.load_state_dict(tensors)
    except RuntimeError as exc:
        raise BundleError(f"{path}: the weights do not fit the recorded network ({exc})") from None
    return net.eval(), card["model"], params, info


def _resample(image: np.ndarray, f: float) -> np.ndarray:
    h, w = image.shape[:2]
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)


def _pad(image: np.ndarray, multiple: int, minimum: int = 0) -> np.ndarray:
    """Zero-pad bottom and right to a multiple of ``multiple``, and to at least ``minimum`` pixels."""
    h, w = image.shape[:2]
    ph, pw = (max(minimum, multiple, math.ceil(n / multiple) * multiple) for n in (h, w))
    out = np.zeros((ph, pw, *image.shape[2:]), image.dtype)
    out[:h, :w] = image
    return out


def _starts(n: int, t: int) -> list[int]:
    """Tile origins about half a tile apart that cover ``0..n`` (``n`` and ``t`` multiples of 32, ``n >= t``)."""
    return sorted({*range(0, n - t + 1, t // 2), n - t})
