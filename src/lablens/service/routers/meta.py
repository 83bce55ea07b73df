"""The review page and what it asks first: who am I, and what does the service run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from lablens import __version__
from lablens.service.auth import Principal
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
    b = state.bundle
    return {"status": "ok", "version": __version__, "bundle_hash": b.hash, "classes": b.classes}
