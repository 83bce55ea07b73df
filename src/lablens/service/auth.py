"""API tokens with roles. Only a token's sha256 is stored; the token itself is shown once, when created."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from lablens.service import audit
from lablens.service.models import ROLES, User


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(session: Session, name: str, role: str, actor: str = "cli") -> str:
    """Add a user with a fresh token (returned; store it now, it cannot be recovered)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if session.execute(select(User).where(User.name == name)).scalar_one_or_none() is not None:
        raise ValueError(f"a user named {name!r} exists")
    token = secrets.token_urlsafe(32)
    user = User(name=name, role=role, token_sha256=token_hash(token), created_at=datetime.now(timezone.utc))
    session.add(user)
    session.flush()
    audit.append(session, actor, "create_user", "user", user.id, None, {"name": name, "role": role})
    return token


def user_for(session: Session, token: str) -> User | None:
    return session.execute(select(User).where(User.token_sha256 == token_hash(token))).scalar_one_or_none()


def allowed(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)
