"""The Python API has every verb of the command line (and nothing the command line lacks)."""

from __future__ import annotations

import typer

from lablens import api
from lablens.cli import app

#: command line → the API function doing the same (verb names match, ``-`` → ``_``, unless listed here)
SAME_AS = {
    "add-user": "service_admin().add_user",
    "users list": "service_admin().users",
    "users rotate-token": "service_admin().change_user",
    "users revoke": "service_admin().change_user",
    "users deactivate": "service_admin().change_user",
    "users activate": "service_admin().change_user",
    "audit head": "service_admin().head",
    "audit seal": "service_admin().seal",
    "audit rotate-key": "service_admin().rotate_key",
    "audit verify": "service_admin().verify",
    "export-reviews": "service_admin().export_reviews",
}
#: API functions that are one CLI verb's other mode (train --label-level sample, predict SOURCES --out DIR)
MODES = {"train_samples": "train", "predict_archive": "predict", "service_admin": "users"}


def _commands(group: typer.Typer, prefix: str = "") -> list[str]:
    names = [prefix + (c.name or c.callback.__name__).replace("_", "-") for c in group.registered_commands]
    for sub in group.registered_groups:
        names += _commands(sub.typer_instance, f"{prefix}{sub.name} ")
    return names


def _resolve(path: str) -> object:
    from lablens.service.admin import ServiceAdmin

    if path.startswith("service_admin()."):
        return getattr(ServiceAdmin, path.split(".", 1)[1])
    return getattr(api, path)


def test_every_cli_verb_is_in_the_api() -> None:
    commands = _commands(app)
    assert len(commands) >= 30 and "train" in commands and "audit verify" in commands
    missing = []
    for command in commands:
        target = SAME_AS.get(command, command.replace("-", "_"))
        try:
            assert callable(_resolve(target))
        except AttributeError:
            missing.append(f"{command} → api.{target}")
    assert not missing, f"CLI verbs the API lacks: {missing}"


def test_every_api_verb_is_a_cli_verb() -> None:
    commands = {c.replace("-", "_") for c in _commands(app)} | {c.split()[0] for c in _commands(app)}
    functions = [n for n in api.__all__ if callable(getattr(api, n)) and n[0].islower()]
    helpers = {"create_estimator", "list_estimators", "load_bundle", "load_config", "build_config", "min_groups_for"}
    extra = [n for n in functions if n not in commands and n not in helpers and MODES.get(n) not in commands]
    assert not extra, f"API functions with no CLI verb: {extra}"
