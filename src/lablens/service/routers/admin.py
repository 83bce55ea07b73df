"""User administration (admins only): list, create, rotate or revoke tokens, deactivate and activate accounts.
Every change is audited; a new token is shown once, in the response that made it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select

from lablens.service import auth
from lablens.service.models import User
from lablens.service.state import Admin, Id, ReadSession, State, WriteSession, get_or_404

router = APIRouter(prefix="/api/admin", tags=["admin"])


class NewUser(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    role: str = "technician"


@router.get("/users")
def list_users(_user: Admin, session: ReadSession) -> list[dict[str, Any]]:
    return [auth.user_doc(u) for u in session.execute(select(User).order_by(User.id)).scalars()]


@router.post("/users", status_code=201)
def create_user(body: NewUser, user: Admin, state: State, session: WriteSession) -> dict[str, Any]:
    try:
        token = auth.create_user(session, state.audit_key, body.name, body.role, actor=user.name)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    session.commit()
    created = auth.find_user(session, body.name.strip())
    return {**auth.user_doc(created), "token": token}


def _target(session: WriteSession, user_id: int, admin: auth.Principal) -> User:
    target = get_or_404(session, User, user_id, "user")
    if target.id == admin.id:
        raise HTTPException(409, "an admin cannot revoke, rotate or deactivate their own account here")
    return target


@router.post("/users/{user_id}/rotate-token")
def rotate_token(user_id: Id, user: Admin, state: State, session: WriteSession) -> dict[str, Any]:
    target = _target(session, user_id, user)
    token = auth.rotate_token(session, state.audit_key, target, user.name)
    session.commit()
    return {**auth.user_doc(target), "token": token}


@router.post("/users/{user_id}/revoke")
def revoke(user_id: Id, user: Admin, state: State, session: WriteSession) -> dict[str, Any]:
    target = _target(session, user_id, user)
    auth.revoke_token(session, state.audit_key, target, user.name)
    session.commit()
    return auth.user_doc(target)


@router.post("/users/{user_id}/deactivate")
def deactivate(user_id: Id, user: Admin, state: State, session: WriteSession) -> dict[str, Any]:
    target = _target(session, user_id, user)
    auth.set_active(session, state.audit_key, target, False, user.name)
    session.commit()
    return auth.user_doc(target)


@router.post("/users/{user_id}/activate")
def activate(user_id: Id, user: Admin, state: State, session: WriteSession) -> dict[str, Any]:
    target = get_or_404(session, User, user_id, "user")
    auth.set_active(session, state.audit_key, target, True, user.name)
    session.commit()
    return auth.user_doc(target)
