"""The FastAPI application: submit cell images as a sample, classify them, review, sign, audit, administer.

``create_app`` assembles it: the database (migrated to the newest schema), the bundle, the audit key, the guard
that authenticates and size-checks every ``/api`` request before its body is read (:mod:`.guard`), and one router
per concern (:mod:`.routers`). Every state change is written with its audit event in one transaction and
committed before the response is sent, so an acknowledged action is on disk even if the server dies the next
instant. Roles: technician (submit, review) < reviewer (sign, read the audit trail) < admin (users).
"""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from lablens import __version__
from lablens.service.audit_key import open_keyed
from lablens.service.auth import Principal, principal_for
from lablens.service.db import make_engine, sessions
from lablens.service.guard import Guard
from lablens.service.registry import ModelRegistry
from lablens.service.routers import admin, audit, meta, models, review, samples
from lablens.service.settings import ServiceSettings
from lablens.service.state import ServiceState

STATIC = Path(__file__).parent / "static"

__all__ = ["ServiceSettings", "create_app"]


def create_app(settings: ServiceSettings) -> FastAPI:
    """The app, with the database migrated to the newest schema, the audit key read and checked against the
    chain (:func:`~lablens.service.audit_key.open_keyed`: a wrong or missing key refuses to start) and the
    bundles on disk registered (:mod:`.registry`; each model is loaded on first use)."""
    engine, key = open_keyed(settings.db_url, settings.audit_key_path)
    read_engine = make_engine(settings.db_url, writer=False) if engine.dialect.name == "sqlite" else engine
    registry = ModelRegistry(settings)
    with sessions(engine)() as session:
        registry.sync(session, key)
        session.commit()
    storage = Path(settings.storage)
    storage.mkdir(parents=True, exist_ok=True)
    state = ServiceState(
        settings=settings,
        make_session=sessions(engine),
        make_read_session=sessions(read_engine),
        registry=registry,
        predict_lock=threading.Lock(),
        storage=storage,
        audit_key=key,
    )

    def lookup(token: str) -> Principal | None:
        with state.make_read_session() as session:
            return principal_for(session, token)

    app = FastAPI(title="lablens review service", version=__version__)
    app.state.settings, app.state.engine, app.state.service = settings, engine, state
    for router in (meta.router, samples.router, review.router, audit.router, admin.router, models.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_middleware(Guard, lookup=lookup, settings=settings)
    return app


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one line naming each bad parameter (never the raw input: it may not even be text)."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return JSONResponse({"detail": "; ".join(parts)}, status_code=422)
