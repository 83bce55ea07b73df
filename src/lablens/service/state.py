"""What every request handler needs (database sessions, the model registry, storage, the audit key) and the small
dependencies that hand it out: sessions, the signed-in user, a role check, bounded ids."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam
from sqlalchemy.orm import Session, sessionmaker

from lablens.service.auth import Principal, allowed
from lablens.service.registry import ModelRegistry
from lablens.service.settings import MAX_ID, ServiceSettings


@dataclass(eq=False)  # hashed by identity: one per app
class ServiceState:
    """The service's long-lived parts, built once by ``create_app``."""

    settings: ServiceSettings
    make_session: sessionmaker  # changes (BEGIN IMMEDIATE on SQLite)
    make_read_session: sessionmaker  # look-ups, which then never queue behind a write
    registry: ModelRegistry
    predict_lock: threading.Lock  # one batch at a time through a model; requests still overlap on I/O
    storage: Path
    audit_key: bytes


def service(request: Request) -> ServiceState:
    return request.app.state.service


State = Annotated[ServiceState, Depends(service)]


def db(state: State) -> Iterator[Session]:
    with state.make_read_session() as session:
        yield session


def db_write(state: State) -> Iterator[Session]:
    with state.make_session() as session:
        yield session


ReadSession = Annotated[Session, Depends(db)]
WriteSession = Annotated[Session, Depends(db_write)]


def current_user(request: Request) -> Principal:
    """The user the guard authenticated before the body was read."""
    user = getattr(request.state, "user", None)
    if user is None:  # only reachable if a route is mounted outside /api
        raise HTTPException(401, "an API token is needed: send 'Authorization: Bearer <token>'")
    return user


def need(role: str) -> Callable[..., Principal]:
    """A dependency admitting users whose role is ``role`` or above (403 naming both otherwise)."""

    def check(user: Annotated[Principal, Depends(current_user)]) -> Principal:
        if not allowed(user.role, role):
            raise HTTPException(403, f"this needs the {role} role; {user.name} is a {user.role}")
        return user

    return check


Technician = Annotated[Principal, Depends(need("technician"))]
Reviewer = Annotated[Principal, Depends(need("reviewer"))]
Admin = Annotated[Principal, Depends(need("admin"))]
Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]


def get_or_404(session: Session, model: type, rid: int, what: str) -> Any:
    row = session.get(model, rid)
    if row is None:
        raise HTTPException(404, f"no {what} {rid}")
    return row
