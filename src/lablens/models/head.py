"""A head on frozen embeddings: the family for a new lab's first few labels (seconds on a CPU).

The backbone is never trained. Each image is embedded once (the pooled pre-logits features of a timm network,
kept in the per-image feature cache) and only a small head learns from the labels:

- ``linear``: multinomial logistic regression on standardised embeddings, classes balanced (scikit-learn's
  :class:`~sklearn.linear_model.LogisticRegression`; ``C`` is its inverse regularisation);
- ``prototype``: nearest class mean by cosine similarity (a prototypical-network head): logits are the cosine to
  each class's mean embedding divided by ``tau``. Written out here, in a few lines of numpy: no library offers
  it as a fitted estimator with the probabilities this contract needs.

The embedding network is ``model_name`` with ``weights`` (``imagenet`` for a backbone that knows images), or
the trained network of a lablens bundle, ``init`` (e.g. a model of another analyser: its backbone embeds, its
head is not used). The bundle a ``head`` writes holds the embedding network itself, so it predicts on its own.

Validation images join the training data (there are no epochs to select), so the family declares
``folds_validation`` and its temperature is fitted on cross-fitted out-of-fold scores, as for ``features``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from lablens.device import resolve_device
from lablens.errors import SettingError
from lablens.evaluate.calibration import softmax
from lablens.features.cache import FeatureStore
from lablens.models.base import ImageClassifier
from lablens.models.classifiers import classifier_spec
from lablens.models.registry import Capabilities, register
from lablens.models.skops_state import dump_pipeline, load_pipeline
from lablens.models.warm_start import read_init_bundle
from lablens.nn.network import run_network
from lablens.nn.weights import build_network, same_architecture
from lablens.params import FamilyParams, params_init
from lablens.train.context import FitContext


class HeadParams(FamilyParams):
    """The embedding network (``model_name`` with ``weights``, or the bundle ``init``), its input ``image_size``,
    and the head: ``linear`` (``C``) or ``prototype`` (``tau``). ``cache``: keep embeddings in the per-image cache;
    ``seed``: initialisation of ``scratch`` weights and the head's random state."""

    model_name: str = "efficientnet_lite0"
    weights: str = "imagenet"
    init: str | None = None
    image_size: int = Field(64, ge=16, le=2048)
    resize_mode: Literal["pad", "squash", "crop"] = "pad"
    head: Literal["linear", "prototype"] = "linear"
    C: float = Field(1.0, gt=0.0)
    tau: float = Field(0.1, gt=0.0)
    cache: bool = True
    seed: int = 0


@register("head")
class HeadClassifier(ImageClassifier):
    """A linear or prototype head on frozen embeddings of ``N×S×S×3`` uint8 images (see :class:`HeadParams`)."""

    Params = HeadParams
    capabilities = Capabilities(folds_validation=True)
    summary = "a linear or prototype head on frozen network embeddings"
    __init__ = params_init(HeadParams)

    # -- the embedding network ----------------------------------------------------------------------
    def _embedder(self, p: Any) -> None:
        """Build the frozen network (once per fit) and the cache key naming what it computes."""
        if p.init is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(p.seed))
                net, info = build_network(p.model_name, p.weights, num_classes=0)
            self.arch_, self.mean_, self.std_, source = info.arch, info.mean, info.std, info.weights_source
        else:
            if p.weights not in ("imagenet", "scratch"):
                raise SettingError(f"model.init {p.init} and model.weights {p.weights!r}: give one of them")
            bundle = read_init_bundle(p.init)
            named = p.model_name != HeadParams.model_fields["model_name"].default
            if named and not same_architecture(p.model_name, bundle.arch):
                raise SettingError(
                    f"model.init {p.init} is {bundle.arch}, model_name {p.model_name}: leave model_name out"
                )
            net, _ = build_network(bundle.arch, "scratch", num_classes=0)
            self._load_backbone(net, bundle.estimator.backbone_of(bundle.estimator.network_).state_dict())
            self.arch_, self.mean_, self.std_ = bundle.arch, bundle.estimator.mean_, bundle.estimator.std_
            source = f"bundle:{bundle.hash[:16]}"
        self.embedder_, self.weights_source_ = net.eval(), source
        seed = f",seed={p.seed}" if source == "scratch" else ""
        self.embedding_key_ = f"embedding[{self.arch_},{source}{seed},size={p.image_size}]"

    @staticmethod
    def _load_backbone(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        """``state`` (a backbone, with or without its classifier) into the headless ``net``; every tensor of
        ``net`` must come from it."""
        missing, _ = net.load_state_dict(state, strict=False)
        if missing:
            raise SettingError(f"the bundle's backbone lacks {len(missing)} tensors of {type(net).__name__}")

    def embed(self, X: np.ndarray, *, device: str | None = None, batch_size: int | None = None) -> np.ndarray:
        """Embeddings of ``X`` (``N×D`` float32), from the cache where the same pixels were embedded before."""
        X = self.resize_images(X)

        def compute(images: np.ndarray) -> np.ndarray:
            dev = resolve_device(device or "auto")
            try:
                out = run_network(
                    self.embedder_.to(dev), images, mean=self.mean_, std=self.std_, device=dev,
                    batch_size=batch_size or 64, amp=False,
                )  # fmt: skip
            finally:
                self.embedder_.to("cpu")
            return out["logits"]

        if not self.cache:
            return compute(X)
        if getattr(self, "_store", None) is None or self._store.key != self.embedding_key_:
            self._store = FeatureStore(self.embedding_key_)  # read from disk once, not on every call
        return self._store.get(X, compute)

    # -- training -----------------------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        *,
        groups: np.ndarray | None = None,
        groups_val: np.ndarray | None = None,
        context: FitContext | None = None,
    ) -> HeadClassifier:
        p = self.typed_params()
        device = context.device if context else None
        self._embedder(p)
        y = np.asarray(y)
        feats = self.embed(X, device=device)
        if X_val is not None and len(X_val):
            feats = np.concatenate([feats, self.embed(X_val, device=device)])
            y = np.concatenate([y, np.asarray(y_val)])
        self.classes_ = np.unique(y)
        y_idx = np.searchsorted(self.classes_, y)
        if p.head == "linear":
            threads = int((context.threads if context else None) or 1)
            pipeline = classifier_spec("logreg").build(int(p.seed), threads)
            pipeline.set_params(clf__C=float(p.C))
            self.pipeline_, self.prototypes_ = pipeline.fit(feats, y_idx), None
        else:
            self.pipeline_, self.prototypes_ = None, _prototypes(feats, y_idx, len(self.classes_))
        self.n_train_ = len(y)
        return self

    # -- inference ----------------------------------------------------------------------------------
    def predict_logits(
        self, X: np.ndarray, *, device: str | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        feats = self.embed(X, device=device, batch_size=batch_size)
        if self.prototypes_ is not None:
            return (_unit(feats) @ self.prototypes_.T / float(self.tau)).astype(np.float64)
        return np.log(np.clip(self.pipeline_.predict_proba(feats), 1e-12, 1.0))

    def predict_proba(
        self, X: np.ndarray, *, device: str | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        return softmax(self.predict_logits(X, device=device, batch_size=batch_size))

    # -- bundles ------------------------------------------------------------------------------------
    def export_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        tensors = {
            f"embedder.{k}": v.detach().cpu().contiguous() for k, v in self.embedder_.state_dict().items()
        }
        if self.prototypes_ is not None:
            tensors["prototypes"] = torch.from_numpy(np.ascontiguousarray(self.prototypes_, dtype=np.float32))
        else:
            tensors["pipeline_skops"] = torch.from_numpy(
                np.frombuffer(dump_pipeline(self.pipeline_), np.uint8).copy()
            )
        meta = {
            "arch": self.arch_,
            "classes": [str(c) for c in self.classes_],
            "mean": list(self.mean_),
            "std": list(self.std_),
            "weights_source": self.weights_source_,
            "embedding_key": self.embedding_key_,
            "n_train": int(self.n_train_),
        }
        return tensors, meta

    def import_state(self, tensors: dict[str, Any], meta: dict[str, Any]) -> HeadClassifier:
        self.classes_ = np.asarray(meta["classes"])
        self.arch_, self.weights_source_ = meta["arch"], meta.get("weights_source", "bundle")
        self.mean_, self.std_ = tuple(meta["mean"]), tuple(meta["std"])
        self.embedding_key_, self.n_train_ = meta["embedding_key"], int(meta.get("n_train", 0))
        net, _ = build_network(self.arch_, "scratch", num_classes=0)
        state = {
            k[len("embedder.") :]: torch.as_tensor(v) for k, v in tensors.items() if k.startswith("embedder.")
        }
        self._load_backbone(net, state)
        self.embedder_ = net.eval()
        if "prototypes" in tensors:
            self.pipeline_, self.prototypes_ = None, np.asarray(tensors["prototypes"], dtype=np.float32)
        else:
            raw = np.asarray(tensors["pipeline_skops"], dtype=np.uint8).tobytes()
            self.pipeline_, self.prototypes_ = load_pipeline(raw), None
        return self


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _prototypes(feats: np.ndarray, y_idx: np.ndarray, n_classes: int) -> np.ndarray:
    """Each class's mean unit-length embedding, itself of unit length (``K×D``)."""
    unit = _unit(feats)
    return _unit(np.stack([unit[y_idx == k].mean(axis=0) for k in range(n_classes)])).astype(np.float32)
