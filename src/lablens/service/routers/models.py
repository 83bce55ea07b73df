"""The model registry over HTTP: every user sees which model serves each task; admins register what is on disk,
promote a candidate with the report that proves it, or roll back (:mod:`lablens.service.registry`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select

from lablens.infer.bundle import BundleError
from lablens.service.models import Model
from lablens.service.registry import RegistryError, model_doc
from lablens.service.state import Admin, Id, ReadSession, State, Technician, WriteSession, get_or_404

router = APIRouter(prefix="/api", tags=["models"])


class Activation(BaseModel):
    reason: Annotated[str, Field(max_length=1000)] = ""
    promotion: dict[str, Any] | None = None  # the `lablens promote` report (promotion.json) of this candidate


@router.get("/models")
def list_models(_user: Technician, session: ReadSession) -> list[dict[str, Any]]:
    rows = session.execute(select(Model).order_by(Model.task, Model.version)).scalars()
    return [model_doc(m) for m in rows]


@router.post("/admin/models/scan")
def scan(user: Admin, state: State, session: WriteSession) -> list[dict[str, Any]]:
    """Register the bundles added to the registry folder since the service started."""
    try:
        new = state.registry.sync(session, state.audit_key, actor=user.name)
    except (BundleError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from None
    session.commit()
    return [model_doc(m) for m in new]


@router.post("/admin/models/{model_id}/activate")
def activate(
    model_id: Id, body: Activation, user: Admin, state: State, session: WriteSession
) -> dict[str, Any]:
    """Promote (a newer version, with its promotion report) or roll back (an older one, with a reason)."""
    m = get_or_404(session, Model, model_id, "model")
    try:
        state.registry.entry(m)  # the bundle must still be there and be this model
        action = state.registry.activate(session, state.audit_key, m, user.name, body.reason, body.promotion)
    except (RegistryError, BundleError) as exc:
        raise HTTPException(409, str(exc)) from None
    session.commit()
    return {**model_doc(m), "action": action}
