"""The service's models: bundles registered per task, with versions, one active per task.

``lablens serve --registry DIR`` serves every task found in ``DIR``::

    DIR/<task>/<any name>/card.json …   a bundle of the task (a folder per version; names are free)
    DIR/<task>/quality/                 optional: the task's quality (blur-level) bundle, its quality gate

At start-up (and on ``POST /api/admin/models/scan``) every bundle not yet registered for its task is registered
with the next version number; the first model of a task becomes active. Afterwards only an admin changes which
model is active: a **promotion** (to a newer version) needs the ``lablens promote`` report that proves this
candidate against the active model (its hashes must match and its decision must be "promote"); a **rollback**
(to an older version) needs a reason. Both are audited with the model before and after. ``lablens serve
--bundle B`` is a registry of one model that serves every task (task ``*``).

A sample records its task and every cell the hash of the bundle that classified it, so samples classified
before a promotion keep their model.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lablens.errors import LablensError, SettingError
from lablens.infer.bundle import CARD, Bundle, BundleError, load_bundle
from lablens.infer.gate import QualityGate
from lablens.infer.predictor import Predictor
from lablens.service import audit
from lablens.service.models import Model
from lablens.service.settings import ServiceSettings

_log = logging.getLogger("lablens.service")
ANY_TASK = "*"
QUALITY = "quality"
TASK_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")


class RegistryError(LablensError):
    """The registry cannot do what was asked; the message says why (an HTTP 409/422 in the API)."""


@dataclass
class ModelEntry:
    """A registered model ready to classify: its bundle, predictor and the task's quality gate."""

    id: int
    task: str
    version: int
    bundle: Bundle
    predictor: Predictor
    gate: QualityGate | None


def model_doc(m: Model) -> dict[str, Any]:
    promotion = json.loads(m.promotion) if m.promotion else None
    return {
        "id": m.id,
        "task": m.task,
        "version": m.version,
        "bundle_hash": m.bundle_hash,
        "path": m.path,
        "active": m.active,
        "registered_by": m.registered_by,
        "registered_at": m.registered_at.isoformat(),
        "promotion": promotion,
    }


class ModelRegistry:
    """Finds bundles on disk, registers them, and hands out loaded models (each loaded once, thread-safe)."""

    def __init__(self, settings: ServiceSettings) -> None:
        if (settings.bundle is None) == (settings.registry is None):
            raise SettingError(
                "give the service one bundle (--bundle) or a registry folder (--registry), not both"
            )
        self.settings = settings
        self._loaded: dict[int, ModelEntry] = {}
        self._lock = threading.Lock()

    # -- what is on disk -----------------------------------------------------------------------------------------
    def discover(self) -> list[tuple[str, Path]]:
        """(task, bundle folder) of every bundle on disk, in a stable order."""
        if self.settings.bundle is not None:
            return [(ANY_TASK, Path(self.settings.bundle).resolve())]
        root = Path(self.settings.registry or "")
        if not root.is_dir():
            raise SettingError(f"registry {root}: no such folder")
        found = []
        for task_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            if not TASK_NAME.match(task_dir.name):
                raise SettingError(
                    f"registry {root}: folder {task_dir.name!r} is not a task name (lower-case letters, digits, "
                    "- and _, at most 50)"
                )
            for b in sorted(p for p in task_dir.iterdir() if p.is_dir() and p.name != QUALITY):
                if (b / CARD).is_file():
                    found.append((task_dir.name, b.resolve()))
        if not found:
            raise SettingError(f"registry {root} holds no bundle (expected {root}/<task>/<name>/card.json)")
        return found

    def sync(self, session: Session, key: bytes, actor: str = "system") -> list[Model]:
        """Register the bundles on disk that are new for their task; activate the first model of a task."""
        new = []
        hashes = []
        for task, path in self.discover():
            bundle = load_bundle(path)  # verifies the weights against the card
            hashes.append(bundle.hash)
            known = session.execute(
                select(Model).where((Model.task == task) & (Model.bundle_hash == bundle.hash))
            ).scalar_one_or_none()
            if known is not None:
                known.path = str(path)  # the same bundle, perhaps moved
                continue
            version = (
                session.execute(select(func.max(Model.version)).where(Model.task == task)).scalar() or 0
            ) + 1
            m = Model(
                task=task,
                version=version,
                bundle_hash=bundle.hash,
                path=str(path),
                active=False,
                registered_by=actor,
                registered_at=datetime.now(timezone.utc),
            )
            session.add(m)
            session.flush()
            after = {"task": task, "version": version, "bundle_hash": bundle.hash, "path": str(path)}
            audit.append(session, key, actor, "register_model", "model", m.id, None, after)
            new.append(m)
            if self.active(session, task, fallback=False) is None:
                self._switch(
                    session, key, actor, m, "activate_model", {"reason": "the first model of the task"}
                )
        if self.settings.bundle is not None:  # `serve --bundle B` serves B, whatever served before
            m = session.execute(
                select(Model).where((Model.task == ANY_TASK) & (Model.bundle_hash == hashes[0]))
            ).scalar_one()
            if not m.active:
                self._switch(session, key, actor, m, "activate_model", {"reason": "lablens serve --bundle"})
        return new

    def _switch(
        self, session: Session, key: bytes, actor: str, m: Model, action: str, note: dict[str, Any]
    ) -> None:
        """Make ``m`` its task's active model and audit ``action`` with the models before and after."""
        current = self.active(session, m.task, fallback=False)
        before = {"active": False} if current is None else _active_doc(current)
        if current is not None:
            current.active = False
        m.active = True
        audit.append(session, key, actor, action, "model", m.id, before, {**_active_doc(m), **note})

    # -- looking models up ---------------------------------------------------------------------------------------
    def active(self, session: Session, task: str, fallback: bool = True) -> Model | None:
        """The active model of ``task`` (else, with ``fallback``, the one serving every task)."""
        for t in (task, ANY_TASK) if fallback else (task,):
            m = session.execute(select(Model).where((Model.task == t) & Model.active)).scalar_one_or_none()
            if m is not None:
                return m
        return None

    def tasks(self, session: Session) -> list[str]:
        return sorted(set(session.execute(select(Model.task)).scalars()))

    def for_task(self, session: Session, task: str) -> ModelEntry:
        m = self.active(session, task)
        if m is None:
            served = ", ".join(self.tasks(session)) or "none"
            raise RegistryError(f"task {task!r}: no model serves it (tasks: {served})")
        return self.entry(m)

    def for_hash(self, session: Session, bundle_hash: str) -> ModelEntry:
        """The registered model with this bundle hash (what classified a cell)."""
        m = session.execute(select(Model).where(Model.bundle_hash == bundle_hash)).scalars().first()
        if m is None:
            raise RegistryError(f"the model {bundle_hash[:12]} that classified this cell is not registered")
        return self.entry(m)

    def entry(self, m: Model) -> ModelEntry:
        with self._lock:
            if m.id not in self._loaded:
                try:
                    bundle = load_bundle(m.path)
                except BundleError as exc:
                    raise RegistryError(f"model {m.task} v{m.version}: {exc}") from None
                if bundle.hash != m.bundle_hash:
                    raise RegistryError(
                        f"{m.path}: the bundle there is no longer model {m.task} v{m.version} "
                        f"(hash {bundle.hash[:12]}, registered {m.bundle_hash[:12]})"
                    )
                s = self.settings
                quality = self._quality_path(m.task)
                gate = QualityGate.for_bundle(bundle, quality, s.max_level)
                predictor = Predictor.prepared(
                    bundle, _log.warning, device="cpu", gate=gate, ood_alpha=s.ood_alpha
                )
                self._loaded[m.id] = ModelEntry(m.id, m.task, m.version, bundle, predictor, gate)
            return self._loaded[m.id]

    def _quality_path(self, task: str) -> str | None:
        if self.settings.registry is None:
            return self.settings.quality
        path = Path(self.settings.registry) / task / QUALITY
        return str(path) if (path / CARD).is_file() else None

    # -- admin actions -------------------------------------------------------------------------------------------
    def activate(
        self,
        session: Session,
        key: bytes,
        model: Model,
        actor: str,
        reason: str,
        promotion: dict[str, Any] | None = None,
    ) -> str:
        """Make ``model`` its task's active model; returns the audited action (promote_model | rollback_model).

        A newer version is promoted only with a ``lablens promote`` report of this model against the active one
        whose decision is to promote; an older one is rolled back to with a reason."""
        current = self.active(session, model.task, fallback=False)
        if current is not None and current.id == model.id:
            raise RegistryError(f"model {model.task} v{model.version} is already active")
        reason = reason.strip()
        if current is not None and model.version > current.version:
            action = "promote_model"
            _check_promotion(promotion, model, current)
        else:
            action = "rollback_model"
            if not reason:
                raise RegistryError(f"a rollback to {model.task} v{model.version} needs a reason")
        if promotion is not None:
            model.promotion = json.dumps(promotion)
        note = {"reason": reason, "promotion": _promotion_summary(promotion)}
        self._switch(session, key, actor, model, action, note)
        return action


def _active_doc(m: Model) -> dict[str, Any]:
    return {"active_model": m.id, "task": m.task, "version": m.version, "bundle_hash": m.bundle_hash}


def _promotion_summary(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    return {
        "decision": doc.get("decision"),
        "n": doc.get("n"),
        "accuracy": doc.get("accuracy"),
        "candidate": (doc.get("candidate") or {}).get("hash"),
        "current": (doc.get("current") or {}).get("hash"),
    }


def _check_promotion(doc: dict[str, Any] | None, model: Model, current: Model) -> None:
    """Refuse a promotion that the report does not prove, naming what does not fit."""
    where = f"promotion of {model.task} v{model.version} over v{current.version}"
    if not isinstance(doc, dict):
        raise RegistryError(f"{where}: send the `lablens promote` report (promotion.json) that proves it")
    cand = (doc.get("candidate") or {}).get("hash")
    cur = (doc.get("current") or {}).get("hash")
    if cand != model.bundle_hash:
        raise RegistryError(
            f"{where}: the report's candidate is {str(cand)[:12]}, not this model ({model.bundle_hash[:12]})"
        )
    if cur != current.bundle_hash:
        raise RegistryError(
            f"{where}: the report compares against {str(cur)[:12]}, not the active model ({current.bundle_hash[:12]})"
        )
    decision = doc.get("decision") or {}
    if decision.get("promote") is not True:
        reasons = "; ".join(decision.get("reasons") or []) or "no decision in the report"
        raise RegistryError(f"{where}: the report refused it: {reasons}")
