"""Names people give are plain text: a NUL byte or a control character in a sample or user name is a 422 naming
the field, on SQLite and PostgreSQL alike (PostgreSQL refuses NUL: it used to be a 500 there)."""

from __future__ import annotations

import pytest
from service_fixtures import png
from typer.testing import CliRunner

from lablens.cli import app as cli


@pytest.mark.parametrize("name", ["S-1\x00", "S-1\nsigned: yes", "S\u202e1", "\x1b[31mS-1"])
def test_control_characters_in_a_sample_name_are_refused(service: dict, name: str) -> None:
    files = [("files", ("c.png", png(service["images"][0]), "image/png"))]
    r = service["client"].post(
        "/api/samples", data={"name": name}, files=files, headers=service["auth"]["technician"]
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("name: control or invisible character U+")
    assert service["client"].get("/api/samples", headers=service["auth"]["technician"]).json() == []


def test_a_plain_name_is_kept_and_trimmed(service: dict) -> None:
    files = [("files", ("c.png", png(service["images"][0]), "image/png"))]
    r = service["client"].post(
        "/api/samples",
        data={"name": "  Ü-0412 (Hämatologie)  "},
        files=files,
        headers=service["auth"]["technician"],
    )
    assert r.status_code == 201 and r.json()["name"] == "Ü-0412 (Hämatologie)"


def test_control_characters_in_a_user_name_are_refused(service: dict) -> None:
    r = service["client"].post(
        "/api/admin/users", json={"name": "eve\x00", "role": "admin"}, headers=service["auth"]["admin"]
    )
    assert r.status_code == 422 and "user name: control or invisible character U+0000" in r.json()["detail"]
    out = CliRunner().invoke(cli, ["add-user", "eve\tadmin"])
    assert out.exit_code == 1 and "user name: control or invisible character U+0009" in out.output


def test_joiners_that_spell_names_in_other_scripts_are_kept() -> None:
    from lablens.errors import SettingError
    from lablens.service.names import checked_name

    persian = "می\u200cخواهم"  # a zero-width non-joiner is part of the word
    assert checked_name(f" {persian} ", "sample", 40) == persian
    with pytest.raises(SettingError, match="U\\+200B at position 2"):
        checked_name("a\u200bb", "sample", 40)  # a zero-width space hides a character: refused
