"""Users, roles and API tokens. Only a token's sha256 is stored; the token itself is shown once, when made.

Every change to a user (created, token rotated or revoked, deactivated, activated) is audited with the state it
leaves, so that the audit replay can tell when a role or a token hash was changed behind its back.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lablens.errors import SettingError
from lablens.service import audit
from lablens.service.models import ROLES, User
from lablens.service.names import checked_name


@dataclass(frozen=True)
class Principal:
    """The signed-in user of a request (plain values: it outlives the session that found it)."""

    id: int
    name: str
    role: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def create_user(session: Session, key: bytes, name: str, role: str, actor: str = "cli") -> str:
    """Add a user with a fresh token (returned; store it now, it cannot be recovered)."""
    if role not in ROLES:
        raise SettingError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    name = checked_name(name, "user name", 100)
    if session.execute(select(User).where(User.name == name)).scalar_one_or_none() is not None:
        raise SettingError(f"a user named {name!r} exists")
    token, digest = _new_token()
    user = User(name=name, role=role, token_sha256=digest, created_at=datetime.now(timezone.utc), active=True)
    session.add(user)
    session.flush()
    after = {"name": name, "role": role, "active": True, "token_sha256": digest}
    audit.append(session, key, actor, "create_user", "user", user.id, None, after)
    return token


def find_user(session: Session, name: str) -> User:
    user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        raise SettingError(f"no user named {name!r}")
    return user


def rotate_token(session: Session, key: bytes, user: User, actor: str) -> str:
    """Give ``user`` a new token (returned once); the old one stops working."""
    token, digest = _new_token()
    _change(session, key, user, actor, "rotate_token", token_sha256=digest)
    return token


def revoke_token(session: Session, key: bytes, user: User, actor: str) -> None:
    """The user's token stops working; the account stays (``rotate_token`` gives a new one)."""
    _change(session, key, user, actor, "revoke_token", token_sha256=None)


def set_active(session: Session, key: bytes, user: User, active: bool, actor: str) -> None:
    """Deactivate (nobody can sign in as ``user``) or activate an account."""
    _change(session, key, user, actor, "activate_user" if active else "deactivate_user", active=active)


def _change(session: Session, key: bytes, user: User, actor: str, action: str, **values: Any) -> None:
    before = {k: getattr(user, k) for k in values}
    for k, v in values.items():
        setattr(user, k, v)
    session.flush()
    audit.append(session, key, actor, action, "user", user.id, before, values)


def user_doc(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "role": user.role,
        "active": user.active,
        "has_token": user.token_sha256 is not None,
        "created_at": user.created_at.isoformat() if user.created_at else None,
    }


def principal_for(session: Session, token: str) -> Principal | None:
    """The active user holding ``token``, or None."""
    user = session.execute(select(User).where(User.token_sha256 == token_hash(token))).scalar_one_or_none()
    if user is None or not user.active:
        return None
    return Principal(user.id, user.name, user.role)


def allowed(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)
