"""The audit key file: created once per installation, checked against the chain before anything is written.

The key lives outside the database (``<home>/audit.key``, see :mod:`lablens.service.home`), is created with
mode 0600 the first time a command opens a database that holds no keyed audit row, and is never created again
for a database that does: a service or an admin command whose key file is missing, readable by others, or does
not verify the newest keyed row refuses to start, naming the key file and the database. Writing under another
key would make every later row look forged.

:func:`rotate_key_file` replaces the key (``lablens audit rotate-key``): the new key is written beside the old
one (``audit.key.new``), the chain re-sealed under it (:func:`lablens.service.audit.rotate`), and only then
moved into place; an interrupted rotation is finished by running it again.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from lablens.errors import SettingError
from lablens.service import audit
from lablens.service.db import KEYED_FROM, migrate, sessions, shown_url

MIN_KEY_BYTES = 16


class AuditKeyError(SettingError):
    """The key file cannot be used with this database; the message names both and says what to do."""


def _write_new(path: Path) -> bytes:
    """A fresh 32-byte key in ``path`` (hex, mode 0600, never over an existing file)."""
    key = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return key


def read_key(path: str | Path) -> bytes:
    """The key in ``path``; a ValueError naming the file when it is unreadable or not a hex key."""
    path = Path(path)
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AuditKeyError(f"audit key file {path} is unreadable or not a hex key ({exc})") from None
    if len(key) < MIN_KEY_BYTES:
        raise AuditKeyError(
            f"audit key file {path} holds a key of {len(key)} bytes; at least {MIN_KEY_BYTES} are needed"
        )
    return key


def load_key(path: str | Path) -> bytes:
    """The key in ``path``, created (32 random bytes, hex, readable by its owner only) when missing.

    Only for a database without a keyed chain; :func:`key_for_chain` decides that."""
    path = Path(path)
    if not path.exists():
        try:
            return _write_new(path)
        except FileExistsError:  # another process created it first
            pass
    return read_key(path)


def _pending_key(path: Path) -> bytes | None:
    """The key an interrupted rotation left in ``path``; None when it cannot be read (then it was never used:
    a rotation writes the file completely before the database sees the key)."""
    try:
        return read_key(path)
    except (AuditKeyError, OSError):
        return None


def _check_private(path: Path) -> None:
    if os.name == "posix" and path.stat().st_mode & 0o077:
        mode = oct(path.stat().st_mode & 0o777)[2:]
        raise AuditKeyError(
            f"audit key file {path} is readable by other users (mode {mode}); make it private: chmod 600 {path}"
        )


def key_for_chain(session: Session, path: str | Path, database: str) -> bytes:
    """The key to append to ``database``'s chain with: ``path``'s key when it verifies the newest keyed row; a
    new key in ``path`` when the database holds no keyed row yet. Refused (naming both) otherwise."""
    path = Path(path)
    newest = audit.newest_keyed(session)
    if newest is None:
        key = load_key(path)
        _check_private(path)
        return key
    if not path.exists():
        raise AuditKeyError(
            f"the database {database} holds an audit chain keyed up to event {newest.id}, but its key file "
            f"{path} is missing: restore the key (from your backup) or name it with --audit-key; a new key "
            "could not continue the chain"
        )
    key = read_key(path)
    _check_private(path)
    if not audit.signed_by(newest, key):
        pending = path.with_name(path.name + ".new")
        hint = (
            f"; {pending} (left by an interrupted `lablens audit rotate-key`) does: run it again to finish"
            if pending.exists() and (pk := _pending_key(pending)) and audit.signed_by(newest, pk)
            else ": it is another installation's key (name the right one with --audit-key), or that event was "
            "changed (`lablens audit verify`)"
        )
        raise AuditKeyError(
            f"audit key file {path} does not verify the newest audit event ({newest.id}) of the database "
            f"{database}{hint}"
        )
    return key


def open_keyed(url: str, key_file: str | Path) -> tuple[Engine, bytes]:
    """The database at ``url`` migrated to the newest schema, and the key its chain continues with.

    A database migrated here from before keyed audit rows has its unkeyed rows sealed with the key (once, at the
    upgrade)."""
    engine, before = migrate(url)
    with sessions(engine)() as session:
        key = key_for_chain(session, key_file, shown_url(url))
        if before is not None and before < KEYED_FROM and audit.seal_legacy(session, key):
            session.commit()
    return engine, key


def rotate_key_file(url: str, key_file: str | Path, actor: str = "cli") -> dict[str, Any]:
    """Replace the key in ``key_file`` with a new one and re-seal the chain under it (stop the service first:
    a running one still holds the old key). Returns the rotation event's id and both key ids."""
    path = Path(key_file)
    pending = path.with_name(path.name + ".new")
    engine, before = migrate(url)
    database = shown_url(url)
    with sessions(engine)() as session:
        newest = audit.newest_keyed(session)
        if pending.exists():
            new = _pending_key(pending)
            if new and newest is not None and newest.action == audit.ROTATED and audit.signed_by(newest, new):
                os.replace(pending, path)  # the database was sealed under it: finish the interrupted rotation
                return {"event_id": newest.id, "key_id": audit.key_id(new), "finished_earlier_rotation": True}
            pending.unlink()  # the rotation that wrote it never reached the database
        old = key_for_chain(session, path, database)
        if before is not None and before < KEYED_FROM:
            audit.seal_legacy(session, old)
        new = _write_new(pending)
        try:
            ev = audit.rotate(session, old, new)
        except BaseException:
            pending.unlink()  # nothing reached the database
            raise
        # if the commit fails, the new key stays in ``pending``: whether or not the commit reached the database,
        # the next ``rotate-key`` finds out (above) and finishes or discards it — never the only copy of a key
        session.commit()
    os.replace(pending, path)
    return {"event_id": ev.id, "key_id": audit.key_id(new), "previous_key_id": audit.key_id(old)}
