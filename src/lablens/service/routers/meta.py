"""The review page and what it asks first: who am I, and what does the service run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from lablens import __version__
from lablens.service.auth import Principal
from lablens.service.registry import RegistryError
from lablens.service.state import State, current_user

STATIC = Path(__file__).resolve().parents[1] / "static"
router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> str:
    return (STATIC / "index.html").read_text(encoding="utf-8")


@router.get("/api/whoami", tags=["meta"])
def whoami(user: Annotated[Principal, Depends(current_user)]) -> dict[str, str]:
    return {"name": user.name, "role": user.role}


@router.get("/api/health", tags=["meta"])
def health(state: State) -> dict[str, Any]:
    """Up, and which model serves each task (hash and classes); the first task's also at the top level."""
    with state.make_read_session() as session:
        tasks = {}
        for task in state.registry.tasks(session):
            m = state.registry.active(session, task, fallback=False)
            if m is None:
                continue
            try:
                b = state.registry.entry(m).bundle
            except RegistryError as exc:  # the bundle went missing from disk: say so, keep serving the rest
                tasks[task] = {"version": m.version, "bundle_hash": m.bundle_hash, "error": str(exc)}
                continue
            tasks[task] = {"version": m.version, "bundle_hash": b.hash, "classes": b.classes}
    first = next(iter(tasks.values()), {})
    return {
        "status": "ok",
        "version": __version__,
        "bundle_hash": first.get("bundle_hash"),
        "classes": first.get("classes"),
        "tasks": tasks,
    }
