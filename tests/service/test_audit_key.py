"""The audit key belongs to one installation: created once (0600), checked against the chain before anything is
written or served, replaced only by ``lablens audit rotate-key``."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from service_fixtures import drop_append_only_guard, free_port
from sqlalchemy import text
from typer.testing import CliRunner

from lablens.cli import app as cli
from lablens.service.audit_key import load_key, open_keyed

runner = CliRunner()


def _keyed_home(home: Path) -> tuple[str, Path]:
    """An installation folder whose database holds a keyed chain (two users added from the command line)."""
    for name in ("tina", "rita"):
        r = runner.invoke(cli, ["add-user", name, "--home", str(home)])
        assert r.exit_code == 0, r.output
    return f"sqlite:///{(home / 'lablens.db').resolve()}", home / "audit.key"


def test_the_first_key_is_created_private_in_the_home_and_reused(tmp_path: Path) -> None:
    _url, key = _keyed_home(tmp_path / "h")
    assert key.is_file() and oct(key.stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "h" / "lablens.db").is_file()
    listed = runner.invoke(cli, ["users", "list", "--home", str(tmp_path / "h")])
    assert listed.exit_code == 0 and "tina" in listed.output and "rita" in listed.output
    ok = runner.invoke(cli, ["audit", "verify", "--home", str(tmp_path / "h")])
    assert ok.exit_code == 0 and "chain intact" in ok.output, ok.output


def test_lablens_home_is_the_default_installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABLENS_HOME", str(tmp_path / "env-home"))
    r = runner.invoke(cli, ["add-user", "tina"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "env-home" / "audit.key").is_file() and (
        tmp_path / "env-home" / "lablens.db"
    ).is_file()


def test_a_keyed_database_refuses_another_or_a_missing_key_naming_both(tmp_path: Path) -> None:
    url, key = _keyed_home(tmp_path / "h")
    other = tmp_path / "other.key"
    load_key(other)
    for command in (["add-user", "x"], ["users", "list"], ["audit", "seal"]):
        r = runner.invoke(cli, [*command, "--db", url, "--audit-key", str(other)])
        assert r.exit_code == 1, r.output
        line = " ".join(r.output.split())
        assert (
            str(other) in line and "lablens.db" in line and "does not verify the newest audit event" in line
        )
    gone = tmp_path / "gone.key"
    r = runner.invoke(cli, ["add-user", "x", "--db", url, "--audit-key", str(gone)])
    assert r.exit_code == 1 and "is missing" in r.output and not gone.exists()  # no new key for an old chain
    with pytest.raises(ValueError, match="is missing"):
        open_keyed(url, gone)
    os.chmod(key, 0o644)
    r = runner.invoke(cli, ["users", "list", "--home", str(tmp_path / "h")])
    assert r.exit_code == 1 and "readable by other users" in r.output and "chmod 600" in r.output


def _serve(home: Path, key: Path, bundle: Path) -> tuple[int | None, str]:
    """Start ``lablens serve`` on ``home`` with ``key``: (None, "") once it answers, or (exit status, stderr)."""
    import subprocess
    import sys
    import time

    port = free_port()
    cmd = [sys.executable, "-m", "lablens.cli", "serve", "--bundle", str(bundle), "--home", str(home)]
    proc = subprocess.Popen(
        [*cmd, "--audit-key", str(key), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                return proc.returncode, proc.stderr.read().decode()  # type: ignore[union-attr]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    return None, ""
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("the server neither started nor exited")
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def test_serve_refuses_a_foreign_key_starts_with_the_right_one_and_rotate_key_reseals(
    tmp_path: Path, service_bundle: tuple[Path, object]
) -> None:
    home = tmp_path / "h"
    url, key = _keyed_home(home)
    other = tmp_path / "other.key"
    load_key(other)
    code, err = _serve(home, other, service_bundle[0])
    line = " ".join(err.split())
    assert code == 1 and str(other) in line and "lablens.db" in line and "Traceback" not in err, err
    assert _serve(home, key, service_bundle[0]) == (None, "")

    old = key.read_bytes()
    rotated = runner.invoke(cli, ["audit", "rotate-key", "--home", str(home)])
    assert rotated.exit_code == 0 and "rotated" in rotated.output, rotated.output
    assert key.read_bytes() != old and oct(key.stat().st_mode & 0o777) == "0o600"
    assert not key.with_name("audit.key.new").exists()
    ok = runner.invoke(cli, ["audit", "verify", "--home", str(home)])
    assert ok.exit_code == 0 and "chain intact" in ok.output, ok.output
    assert _serve(home, key, service_bundle[0]) == (None, "")  # the new key continues the chain
    after = runner.invoke(cli, ["add-user", "adam", "--home", str(home)])
    assert after.exit_code == 0
    assert runner.invoke(cli, ["audit", "verify", "--home", str(home)]).exit_code == 0
    old_key = tmp_path / "old.key"
    old_key.write_bytes(old)
    os.chmod(old_key, 0o600)
    assert runner.invoke(cli, ["add-user", "x", "--db", url, "--audit-key", str(old_key)]).exit_code == 1


def test_rows_before_a_rotation_stay_pinned_by_it(tmp_path: Path) -> None:
    """Whoever knew the old key (a published one) can no longer rewrite what came before the rotation."""
    from lablens.service.db import make_engine

    home = tmp_path / "h"
    url, _key = _keyed_home(home)
    assert runner.invoke(cli, ["audit", "rotate-key", "--home", str(home)]).exit_code == 0
    engine = make_engine(url)
    drop_append_only_guard(engine)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_events SET after = replace(after, 'technician', 'admin') WHERE id = 1")
        )
    engine.dispose()
    bad = runner.invoke(cli, ["audit", "verify", "--home", str(home)])
    assert bad.exit_code == 1 and "events before this key rotation" in " ".join(bad.output.split())


def test_rotate_key_refuses_a_chain_that_does_not_verify(tmp_path: Path) -> None:
    from lablens.service.db import make_engine

    home = tmp_path / "h"
    url, key = _keyed_home(home)
    engine = make_engine(url)
    with engine.begin() as conn:  # a record changed behind the audit's back
        conn.execute(text("UPDATE users SET role = 'admin' WHERE name = 'tina'"))
    engine.dispose()
    before = key.read_bytes()
    r = runner.invoke(cli, ["audit", "rotate-key", "--home", str(home)])
    assert r.exit_code == 1 and "does not verify with the current key" in r.output
    assert key.read_bytes() == before and not key.with_name("audit.key.new").exists()


def test_an_interrupted_rotation_is_named_and_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lablens.service.audit_key as audit_key

    home = tmp_path / "h"
    url, key = _keyed_home(home)
    real_replace = os.replace

    def crash(src: str | os.PathLike, dst: str | os.PathLike) -> None:  # killed after the database commit
        raise KeyboardInterrupt

    monkeypatch.setattr(audit_key.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        audit_key.rotate_key_file(url, key)
    monkeypatch.setattr(audit_key.os, "replace", real_replace)
    assert key.with_name("audit.key.new").exists()
    r = runner.invoke(cli, ["users", "list", "--home", str(home)])
    assert r.exit_code == 1 and "interrupted" in r.output and "run it again" in " ".join(r.output.split())
    again = runner.invoke(cli, ["audit", "rotate-key", "--home", str(home)])
    assert again.exit_code == 0 and "finished the interrupted rotation" in again.output, again.output
    assert runner.invoke(cli, ["audit", "verify", "--home", str(home)]).exit_code == 0
    assert runner.invoke(cli, ["users", "list", "--home", str(home)]).exit_code == 0


def test_a_commit_that_reports_failure_after_it_landed_keeps_the_new_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops right after the database committed the rotation: the new key must survive."""
    from sqlalchemy.orm import Session

    import lablens.service.audit_key as audit_key

    home = tmp_path / "h"
    url, key = _keyed_home(home)
    real_commit = Session.commit

    def commit_then_fail(self: Session) -> None:
        real_commit(self)
        raise ConnectionError("server closed the connection unexpectedly")

    monkeypatch.setattr(Session, "commit", commit_then_fail)
    with pytest.raises(ConnectionError):
        audit_key.rotate_key_file(url, key)
    monkeypatch.setattr(Session, "commit", real_commit)
    assert key.with_name("audit.key.new").exists()  # the only copy of the key the database is now sealed under
    again = runner.invoke(cli, ["audit", "rotate-key", "--home", str(home)])
    assert again.exit_code == 0 and "finished the interrupted rotation" in again.output, again.output
    assert runner.invoke(cli, ["audit", "verify", "--home", str(home)]).exit_code == 0


def test_an_unreadable_leftover_key_does_not_block_a_rotation(tmp_path: Path) -> None:
    home = tmp_path / "h"
    _url, key = _keyed_home(home)
    key.with_name("audit.key.new").write_text("not a key\n")  # a rotation that died while writing it
    r = runner.invoke(cli, ["audit", "rotate-key", "--home", str(home)])
    assert r.exit_code == 0, r.output
    assert runner.invoke(cli, ["audit", "verify", "--home", str(home)]).exit_code == 0
