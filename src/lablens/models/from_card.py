"""A fitted estimator rebuilt from a bundle's card and tensors (what loading a bundle and a warm start share)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lablens.bundle_files import BundleError
from lablens.models.registry import create_estimator

# Runtime settings that cards written before lablens 0.2 stored among the estimator parameters; they are
# arguments of fit/predict now (FitContext), so loading such a card leaves them out.
RETIRED_PARAMS = ("device", "threads", "eval_batch_size", "checkpoint_dir", "resume", "progress")


def estimator_from_card(path: str | Path, card: dict[str, Any], tensors: dict[str, Any]) -> Any:
    """The fitted estimator the card names, with the bundle's state; :class:`BundleError` naming ``path`` when the
    card cannot rebuild it (a field-detector bundle, an unknown model, state that does not fit)."""
    if "detector" in card:
        raise BundleError(
            f"{path} is a field-detector bundle (lablens train-detector), not a classifier: give it to --detector"
        )
    est_info = card.get("estimator") or {}
    params = {k: v for k, v in (est_info.get("params") or {}).items() if k not in RETIRED_PARAMS}
    if "tta" in params and "tta_margin" not in params:
        params["tta_margin"] = None  # cards from before adaptive TTA: every image was seen in all 8 views
    try:
        estimator = create_estimator(est_info["name"], **params)
        estimator.import_state(tensors, card.get("model") or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path}: cannot rebuild the model from the card ({exc})") from exc
    return estimator
