"""Administration of an installation's review service: users, the audit chain, the reviewed cells.

The command line's ``add-user``, ``users …``, ``audit …`` and ``export-reviews`` are thin wrappers of
:class:`ServiceAdmin`, and :mod:`lablens.api` exposes the same object::

    admin = ServiceAdmin.open(home="~/lablens-home")        # or db=…, audit_key=…, storage=…
    token = admin.add_user("tina", "technician")
    print(admin.verify()["ok"])

Every change is written to the audit chain with the installation's key, which is checked against the chain
when the object is opened (:func:`~lablens.service.audit_key.open_keyed`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lablens.errors import SettingError
from lablens.service.home import ServiceHome


@dataclass(frozen=True)
class VerifyResult:
    """What ``audit verify`` found: the chain's verdict and whether the key signed the newest keyed event."""

    ok: bool
    events: int
    problems: list[dict[str, Any]]
    key_signs_newest: bool


@dataclass
class ServiceAdmin:
    """One installation's database, stored images and audit key, resolved as ``lablens serve`` resolves them."""

    where: ServiceHome

    @classmethod
    def open(
        cls,
        home: str | Path | None = None,
        db: str | None = None,
        storage: str | Path | None = None,
        audit_key: str | Path | None = None,
    ) -> ServiceAdmin:
        return cls(ServiceHome.resolve(home, db, storage, audit_key))

    def _keyed(self) -> tuple[Any, bytes]:
        """Sessions on the database and the key its chain continues with (refused when it does not verify)."""
        from lablens.service.audit_key import open_keyed
        from lablens.service.db import sessions

        engine, key = open_keyed(self.where.db_url, self.where.key_file)
        return sessions(engine), key

    # -- users ---------------------------------------------------------------------------------------------------
    def add_user(self, name: str, role: str) -> str:
        """Create a user; returns its API token (shown once: only its hash is stored)."""
        from lablens.service.auth import create_user

        make_session, key = self._keyed()
        with make_session() as session:
            token = create_user(session, key, name, role)
            session.commit()
        return token

    def users(self) -> list[dict[str, Any]]:
        """Every user: name, role, whether active, whether a token is set."""
        from sqlalchemy import select

        from lablens.service.auth import user_doc
        from lablens.service.models import User

        make_session, _ = self._keyed()
        with make_session() as session:
            return [user_doc(u) for u in session.execute(select(User).order_by(User.id)).scalars()]

    def change_user(self, name: str, change: str) -> str | None:
        """``rotate-token`` (returns the new token), ``revoke``, ``deactivate`` or ``activate`` user ``name``."""
        from lablens.service import auth

        if change not in ("rotate-token", "revoke", "deactivate", "activate"):
            raise SettingError(f"user change {change!r}: choose rotate-token, revoke, deactivate or activate")
        make_session, key = self._keyed()
        with make_session() as session:
            user = auth.find_user(session, name)
            token = None
            if change == "rotate-token":
                token = auth.rotate_token(session, key, user, "cli")
            elif change == "revoke":
                auth.revoke_token(session, key, user, "cli")
            else:
                auth.set_active(session, key, user, change == "activate", "cli")
            session.commit()
        return token

    # -- the audit chain -----------------------------------------------------------------------------------------
    def head(self) -> dict[str, Any]:
        """The newest audit event's id and hash (keep it away from the server; verify against it later)."""
        from lablens.service.audit import head

        make_session, _ = self._keyed()
        with make_session() as session:
            return head(session)

    def seal(self) -> bool:
        """Seal audit rows written before lablens keyed its chain; False when there was nothing to seal."""
        from lablens.service.audit import seal_legacy

        make_session, key = self._keyed()
        with make_session() as session:
            sealed = seal_legacy(session, key)
            session.commit()
        return bool(sealed)

    def rotate_key(self) -> dict[str, Any]:
        """Replace the audit key and re-seal the chain under it (:func:`~lablens.service.audit_key.rotate_key_file`)."""
        from lablens.service.audit_key import rotate_key_file

        return rotate_key_file(self.where.db_url, self.where.key_file)

    def verify(self, expected_head: str | dict[str, Any] | None = None) -> VerifyResult:
        """Check the chain, an exported head (a dict, its JSON, or a file holding it) and the records.

        The key is only read: a wrong one is reported (``key_signs_newest``), never refused."""
        from lablens.service.audit import newest_keyed, signed_by, verify
        from lablens.service.audit_key import read_key
        from lablens.service.db import migrate, sessions

        expected = _head(expected_head)
        engine, _ = migrate(self.where.db_url)
        key = read_key(self.where.key_file)
        with sessions(engine)() as session:
            result = verify(session, key, expected)
            newest = newest_keyed(session)
            signs = newest is None or signed_by(newest, key)
        return VerifyResult(result["ok"], result["events"], result["problems"], signs)

    # -- reviewed cells ------------------------------------------------------------------------------------------
    def export_reviews(self, out: str | Path, include_unsigned: bool = False) -> Any:
        """The technicians' labels as a training set in the new folder ``out``; returns its manifest."""
        from lablens.service.export_reviews import export_reviews

        return export_reviews(self.where.db_url, self.where.images, out, signed_only=not include_unsigned)


def _head(value: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    try:
        text = Path(value).read_text(encoding="utf-8") if Path(value).is_file() else value
    except OSError:  # JSON too long to be a file name
        text = value
    try:
        head = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingError(f"--head: not a JSON head ({exc})") from None
    if not isinstance(head, dict):
        raise SettingError("--head: a head is a JSON object with the event's id and hash")
    return head
