"""``lablens add-user``: a token printed once, only its hash stored, clear refusals."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from lablens.cli import app
from lablens.service.auth import token_hash

runner = CliRunner()


def test_add_user_prints_a_token_and_stores_only_its_hash(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    key = ["--audit-key", str(tmp_path / "audit.key")]
    r = runner.invoke(app, ["add-user", "tina", "--role", "technician", "--db", url, *key])
    assert r.exit_code == 0, r.output
    token = r.output.strip().splitlines()[-1]
    with create_engine(url).connect() as conn:
        rows = conn.execute(text("SELECT name, role, token_sha256 FROM users")).all()
    assert rows == [("tina", "technician", token_hash(token))] and token not in str(rows)
    again = runner.invoke(app, ["add-user", "tina", "--db", url, *key])
    assert again.exit_code == 1 and "exists" in again.output
    bad = runner.invoke(app, ["add-user", "x", "--role", "boss", "--db", url, *key])
    assert bad.exit_code == 1 and "role must be one of" in bad.output


def test_unusable_database_urls_are_named_not_tracebacks(tmp_path: Path) -> None:
    r = runner.invoke(app, ["add-user", "tina", "--db", "not a url"])
    assert r.exit_code == 1 and "not a SQLAlchemy URL" in r.output
    r = runner.invoke(
        app, ["add-user", "tina", "--db", "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"]
    )
    assert r.exit_code == 1 and "cannot open the database" in r.output and "secret" not in r.output
    r = runner.invoke(app, ["add-user", "tina", "--db", f"sqlite:///{tmp_path / 'missing' / 'dir' / 'l.db'}"])
    assert r.exit_code == 1 and "cannot open the database" in r.output
