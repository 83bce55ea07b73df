"""What a failed command looks like: bad input is one line and exit 1; a bug in lablens says so, saves its
traceback to a log it names, and exits 70."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lablens.cli
from lablens.cli import app

runner = CliRunner()


def test_a_user_error_is_one_line_and_exit_status_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABLENS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LABLENS_DEBUG", raising=False)
    (tmp_path / "bad.yaml").write_text("train:\n  epochz: 3\n")
    result = runner.invoke(app, ["show-config", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "unknown setting 'train.epochz'" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "home" / "logs").exists()  # nothing to report


def test_an_internal_error_is_called_a_bug_and_its_traceback_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABLENS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LABLENS_DEBUG", raising=False)

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("an internal invariant failed")  # a ValueError is not the user's fault either

    monkeypatch.setattr(lablens.cli, "build_config", broken)
    result = runner.invoke(app, ["show-config"])
    assert result.exit_code == 70
    text = " ".join(result.output.split())  # the console may wrap the line
    assert text.startswith("this is a bug in lablens (ValueError: an internal invariant failed)")
    log = Path(re.search(r"the traceback is in (\S+\.log)", text).group(1))
    assert log.parent == tmp_path / "home" / "logs"
    saved = log.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in saved and "in broken" in saved and "an internal invariant" in saved


def test_lablens_debug_raises_the_bug_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABLENS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LABLENS_DEBUG", "1")

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("x")

    monkeypatch.setattr(lablens.cli, "build_config", broken)
    result = runner.invoke(app, ["show-config"])
    assert isinstance(result.exception, KeyError)
