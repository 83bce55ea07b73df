"""Out-of-distribution guard: does an image (a submission) look like the images the model was trained on?

A classifier is confidently wrong on images from another modality, stain or microscope: a PBC model called
BCCD white cells platelets with a median top probability of 0.60 and nothing said so. Every bundle trained on
single images therefore carries a compact summary of its training data (card key ``ood``), and every
prediction path compares images with it:

- **image statistics**: per channel mean, standard deviation and the 5/25/50/75/95th percentiles of the
  intensities, plus the mean horizontal and vertical grey-level gradient (23 numbers, computed on the image as
  the model sees it). Their mean and Ledoit-Wolf shrunk covariance are fitted on the training + validation
  images; an image's score is its squared Mahalanobis distance. The flag threshold is a split-conformal
  quantile of **cross-fitted** distances (5 folds: each image scored by a Gaussian fitted without it), so the
  share of in-distribution images flagged is about ``alpha`` (default 1 %) rather than the optimistic figure
  in-sample distances would give (with fewer than ``1/alpha − 1`` images it is ``1/(n+1)``: the largest
  held-out distance).
- **confidence**: the calibrated top-class probabilities of the validation images (101 percentiles). A
  submission of ≥ 10 images whose median top probability falls below the validation 10th percentile is
  flagged: for in-distribution images that happens with probability P(Bin(n, 0.1) ≥ n/2) < 0.002.

A submission (a sample, a job) is flagged when its flagged images are more than chance allows (one-sided
binomial test against ``alpha``, p < 0.001), when all of them are flagged (nothing in it can be read), or by the
confidence rule; the reasons say which and with what
figures. Embedding statistics (Mahalanobis or k-NN on the network's pooled features) were measured and left
out: on the blood-cell phantom bundle they flagged 0 % of ANA and kidney phantoms (far-away images have small
feature norms and sit near the feature mean), while these image statistics flag 100 % of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from pydantic import BeforeValidator

from lablens.errors import SettingError

OUT_OF_DISTRIBUTION = "out_of_distribution"
ALPHAS = (0.05, 0.02, 0.01, 0.005, 0.002, 0.001)  # flag rates a card holds thresholds for
DEFAULT_ALPHA = 0.01
QUANTILES = (5, 25, 50, 75, 95)
FEATURES = (
    [f"{s}_{c}" for s in ("mean", "sd") for c in "rgb"]
    + [f"p{q}_{c}" for c in "rgb" for q in QUANTILES]
    + ["grad_x", "grad_y"]
)
FOLDS = 5
MIN_IMAGES = 20  # fewer training images give no usable covariance
SUBMISSION_P = 1e-3
CONFIDENCE_MIN_N = 10
CHUNK = 256


def image_statistics(images: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """``N × 23`` statistics of ``N × H × W × 3`` uint8 images (order: :data:`FEATURES`), of ``images[rows]``
    when ``rows`` is given (read in chunks: no copy of the selected images is made).

    Histograms give exact means, deviations and (lower) percentiles of 8-bit data at a fraction of a sort's cost.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"image statistics need N×H×W×3 uint8 images, not {images.dtype} {images.shape}")
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    out = [_statistics(images[rows[i : i + CHUNK]]) for i in range(0, len(rows), CHUNK)]
    return np.concatenate(out) if out else np.zeros((0, len(FEATURES)))


def _statistics(x: np.ndarray) -> np.ndarray:
    n, h, w, _ = x.shape
    pixels = h * w
    offsets = (np.arange(n)[:, None] * 3 + np.arange(3)[None, :]) * 256  # one histogram per image and channel
    hist = np.bincount((x.reshape(n, -1, 3) + offsets[:, None, :]).ravel(), minlength=n * 768)
    hist = hist.reshape(n, 3, 256).astype(np.float64) / pixels
    levels = np.arange(256) / 255.0
    mean = hist @ levels
    sd = np.sqrt(np.maximum(hist @ levels**2 - mean**2, 0.0))
    cdf = np.cumsum(hist, axis=2)
    pct = np.stack([(cdf < q / 100).sum(axis=2) / 255.0 for q in QUANTILES], axis=2)  # n × 3 × 5
    grey = x.astype(np.float32).mean(axis=3) / 255.0
    gx = np.abs(np.diff(grey, axis=2)).mean(axis=(1, 2))
    gy = np.abs(np.diff(grey, axis=1)).mean(axis=(1, 2))
    return np.concatenate([mean, sd, pct.reshape(n, -1), gx[:, None], gy[:, None]], axis=1)


def _gaussian(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf().fit(stats)
    return lw.location_, lw.precision_


def _distance(stats: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = stats - mean
    return np.einsum("ij,jk,ik->i", d, precision, d)


def parse_alpha(text: str) -> float | None:
    """``--ood`` values: ``off`` (None) or a flag rate the cards hold thresholds for (0.05 … 0.001)."""
    text = text.strip().lower()
    if text == "off":
        return None
    try:
        alpha = float(text)
    except ValueError:
        alpha = -1.0
    if alpha not in ALPHAS:
        raise SettingError(
            f"--ood {text!r}: use off or a flag rate among {', '.join(f'{a:g}' for a in ALPHAS)} "
            "(the share of images like the training images that get flagged)"
        )
    return alpha


def alpha_setting(value: Any) -> float | None:
    """An ``ood`` setting as a config file or option gives it (``off``, YAML's ``false``, a rate) → the rate."""
    if value is None or value is False:
        return None
    return parse_alpha(str(value))


#: the out-of-distribution guard's flag rate in a verb's config (None: off)
OodAlpha = Annotated[float | None, BeforeValidator(alpha_setting)]


def conformal_threshold(scores: np.ndarray, alpha: float) -> float:
    """The split-conformal ``1 − alpha`` quantile of held-out ``scores``: an image like them exceeds it with
    probability ≤ ``alpha``. With too few scores for ``alpha`` it is their maximum, exceeded with probability
    ``1 / (n + 1)`` (:func:`effective_alpha`)."""
    n = len(scores)
    k = int(np.ceil((n + 1) * (1 - alpha)))
    return float(np.sort(scores)[min(k, n) - 1])


def effective_alpha(alpha: float, n: int) -> float:
    """The flag rate a threshold from ``n`` held-out scores gives when ``alpha`` is asked: no less than
    ``1 / (n + 1)``."""
    return max(alpha, 1.0 / (n + 1))


@dataclass(frozen=True)
class SubmissionCheck:
    """The verdict on a submission (a sample, a job): flagged or not, and why."""

    n_images: int
    n_flagged: int
    flagged: bool
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_images": self.n_images,
            "n_flagged": self.n_flagged,
            "flagged": self.flagged,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class OodSummary:
    """What a bundle knows of its training images: the image-statistics Gaussian, its thresholds, and the
    validation confidence percentiles."""

    mean: np.ndarray
    precision: np.ndarray
    thresholds: dict[float, float]
    n_images: int
    confidence: np.ndarray | None = None  # 101 percentiles of validation top-class probabilities
    n_confidence: int = 0
    appearance: dict[str, Any] | None = None  # the same images' quality reference (ImageReference.to_card())

    # -- fitting --------------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        images: np.ndarray,
        top_proba: np.ndarray | None = None,
        *,
        rows: np.ndarray | None = None,
        seed: int = 0,
    ) -> OodSummary | None:
        """Fit on the model's training + validation images (``images[rows]``, at its input size); ``top_proba``
        are the calibrated top-class probabilities of validation images. None with fewer than 20 images."""
        from sklearn.model_selection import KFold

        stats = image_statistics(images, rows)
        if len(stats) < MIN_IMAGES:
            return None
        held_out = np.zeros(len(stats))
        for fit_rows, score_rows in KFold(FOLDS, shuffle=True, random_state=seed).split(stats):
            held_out[score_rows] = _distance(stats[score_rows], *_gaussian(stats[fit_rows]))
        thresholds = {a: conformal_threshold(held_out, a) for a in ALPHAS}
        mean, precision = _gaussian(stats)
        conf = None
        if top_proba is not None and len(top_proba):
            conf = np.percentile(np.asarray(top_proba, dtype=np.float64), np.arange(101))
        from lablens.quality.reference import ImageReference

        reference = ImageReference.fit(images, rows)
        return cls(
            mean,
            precision,
            thresholds,
            len(stats),
            conf,
            0 if conf is None else len(top_proba),
            None if reference is None else reference.to_card(),
        )

    # -- the card -------------------------------------------------------------------------------------------
    def to_card(self) -> dict[str, Any]:
        return {
            "method": "image statistics, Ledoit-Wolf Mahalanobis; conformal thresholds on 5-fold cross-fitted "
            "distances of the training + validation images",
            "features": list(FEATURES),
            "mean": [float(v) for v in self.mean],
            "precision": [[float(v) for v in row] for row in self.precision],
            "thresholds": {f"{a:g}": float(t) for a, t in self.thresholds.items()},
            "n_images": self.n_images,
            "confidence": None
            if self.confidence is None
            else {
                "percentiles": [round(float(v), 6) for v in self.confidence],
                "n_images": self.n_confidence,
            },
            "appearance": self.appearance,
        }

    @classmethod
    def from_card(cls, doc: dict[str, Any] | None) -> OodSummary | None:
        if not doc:
            return None
        if list(doc.get("features") or []) != list(FEATURES):
            raise SettingError(
                "the bundle's OOD summary uses other image statistics than this lablens version"
            )
        conf = doc.get("confidence")
        return cls(
            np.asarray(doc["mean"], dtype=np.float64),
            np.asarray(doc["precision"], dtype=np.float64),
            {float(a): float(t) for a, t in doc["thresholds"].items()},
            int(doc["n_images"]),
            None if not conf else np.asarray(conf["percentiles"], dtype=np.float64),
            0 if not conf else int(conf["n_images"]),
            doc.get("appearance"),
        )

    @classmethod
    def from_bundle(cls, bundle: Any) -> OodSummary | None:
        """The bundle's summary; None for bundles without one (trained before lablens 0.3, or on bags)."""
        return cls.from_card(bundle.card.get("ood"))

    # -- use ------------------------------------------------------------------------------------------------
    def threshold(self, alpha: float = DEFAULT_ALPHA) -> float:
        if alpha not in self.thresholds:
            held = ", ".join(f"{a:g}" for a in sorted(self.thresholds)) or "none"
            raise SettingError(f"--ood {alpha:g}: this bundle holds OOD thresholds for {held}")
        return self.thresholds[alpha]

    def scores(self, images: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each image's statistics (images at the model's input size)."""
        return _distance(image_statistics(images), self.mean, self.precision)

    def check(
        self, scores: np.ndarray, top_proba: np.ndarray | None = None, alpha: float = DEFAULT_ALPHA
    ) -> SubmissionCheck:
        """Judge a submission from its images' ``scores`` and (optionally) their calibrated top probabilities."""
        from scipy.stats import binom

        scores = np.asarray(scores, dtype=np.float64)
        n = len(scores)
        limit = self.threshold(alpha)
        rate = effective_alpha(alpha, self.n_images)
        k = int((scores > limit).sum())
        reasons: list[str] = []
        if k and (binom.sf(k - 1, n, rate) < SUBMISSION_P or k == n):
            # more flagged images than chance allows, or all of them (then nothing in it can be read at all)
            reasons.append(
                f"{k} of {n} images do not look like the training images (image statistics beyond the "
                f"{100 * (1 - rate):.4g}th percentile; about {rate * n:.1f} expected)"
            )
        if self.confidence is not None and top_proba is not None:
            top = np.asarray(top_proba, dtype=np.float64)
            top = top[np.isfinite(top)]
            if len(top) >= CONFIDENCE_MIN_N and np.median(top) < self.confidence[10]:
                reasons.append(
                    f"median top-class probability {np.median(top):.2f} of {len(top)} images is below the "
                    f"validation images' 10th percentile {self.confidence[10]:.2f} (their median "
                    f"{self.confidence[50]:.2f})"
                )
        return SubmissionCheck(n, k, bool(reasons), reasons)


@dataclass(frozen=True)
class OodGuard:
    """A summary with the flag rate in use: what predictors hold."""

    summary: OodSummary
    alpha: float = DEFAULT_ALPHA

    @classmethod
    def for_bundle(cls, bundle: Any, alpha: float | None = DEFAULT_ALPHA) -> OodGuard | None:
        """The bundle's guard; None when ``alpha`` is None (switched off) or the bundle has no summary."""
        summary = OodSummary.from_bundle(bundle)
        if alpha is None or summary is None:
            return None
        summary.threshold(alpha)  # refuse an alpha the card holds no threshold for, before any work
        return cls(summary, alpha)

    @property
    def limit(self) -> float:
        return self.summary.threshold(self.alpha)

    def scores(self, images: np.ndarray) -> np.ndarray:
        return self.summary.scores(images)

    def flags(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.limit

    def check(self, scores: np.ndarray, top_proba: np.ndarray | None = None) -> SubmissionCheck:
        return self.summary.check(scores, top_proba, self.alpha)

    def describe(self) -> dict[str, Any]:
        """Settings for job records and reports; ``rate`` is the flag rate the bundle's images allow
        (``alpha``, or ``1/(n+1)`` when fitted on fewer than ``1/alpha − 1`` images)."""
        n = self.summary.n_images
        return {
            "alpha": self.alpha,
            "rate": round(effective_alpha(self.alpha, n), 6),
            "threshold": round(self.limit, 4),
            "n_images": n,
        }
