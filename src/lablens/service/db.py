"""Engine, sessions and migrations. SQLite file by default; any SQLAlchemy URL (``postgresql+psycopg://…``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import sessionmaker

from lablens.errors import SettingError

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, writer: bool = True) -> Engine:
    """An engine for ``url``.

    SQLite gets WAL journaling, foreign keys, full fsync on commit and a busy timeout for concurrent clients; a
    ``writer`` engine starts its transactions with ``BEGIN IMMEDIATE`` (one writer at a time, so the audit chain
    never forks), a reader engine with a plain ``BEGIN`` (a consistent snapshot that never waits for writers).
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=FULL")  # a committed review survives a crash
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True)


KEYED_FROM = "0003"  # the migration after which audit rows are keyed


def upgrade(engine: Engine) -> str | None:
    """Bring the schema to the newest migration (Alembic ``upgrade head``); returns the revision it was at."""
    from alembic.runtime.migration import MigrationContext

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        before = MigrationContext.configure(conn).get_current_revision()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return before


def shown_url(url: str) -> str:
    """``url`` as messages may show it (password hidden)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        raise SettingError(
            f"database URL {url!r} is not a SQLAlchemy URL (e.g. sqlite:////path/to/lablens.db)"
        ) from None


def migrate(url: str) -> tuple[Engine, str | None]:
    """An engine with the schema at the newest migration, and the revision the database was at before (None:
    a new database); a URL that cannot be used is a ValueError naming it."""
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    shown = shown_url(url)
    try:
        engine = make_engine(url)
        before = upgrade(engine)
    except (ArgumentError, NoSuchModuleError, DBAPIError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise SettingError(f"cannot open the database {shown}: {reason}") from None
    return engine, before


def open_database(url: str, audit_key: bytes | None = None) -> Engine:
    """An engine with the schema at the newest migration (:func:`migrate`).

    When this call migrates a database from before keyed audit rows and ``audit_key`` is given, the existing
    unkeyed rows are sealed (:func:`lablens.service.audit.seal_legacy`): once, at the upgrade, never later. A
    command that writes audit rows opens its database with
    :func:`lablens.service.audit_key.open_keyed`, which also checks the key against the chain.
    """
    engine, before = migrate(url)
    if audit_key is not None and before is not None and before < KEYED_FROM:
        from lablens.service.audit import seal_legacy

        with sessions(engine)() as session:
            seal_legacy(session, audit_key)
            session.commit()
    return engine


def sessions(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
