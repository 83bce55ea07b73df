"""lablens's own errors: what a user can act on.

A :class:`LablensError` means the input or the settings are the problem — a file that cannot be read, a setting
that does not apply, a column that is missing — and its message says which and why, in one line: the command
line prints it as ``error: …`` and exits with status 1. Every other exception is a bug in lablens: the command
line says so, and saves the traceback to a log file it names (:mod:`lablens.cli`).

Each layer raises its own subclasses (``DataError``, ``BundleError``, ``RunError`` …); they derive from
``ValueError`` or ``KeyError`` where code catching those before keeps working.
"""

from __future__ import annotations


class LablensError(Exception):
    """A problem the user can act on; the message names the file or setting and the reason."""


class SettingError(LablensError, ValueError):
    """A setting, option or parameter that does not apply, or a value lablens cannot use."""


class UnknownNameError(SettingError):
    """A name that no registry of lablens holds (a model, extractor, detector, preset …); suggests close ones."""


class ParamError(SettingError):
    """A parameter a registered family (model, extractor, detector …) does not take, or a value it cannot use."""


class ConfigError(SettingError):
    """A configuration file or key that cannot be used: unreadable YAML, an unknown key, a value out of range."""


class MissingInputError(LablensError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class OutputExistsError(LablensError, FileExistsError):
    """An output that already exists: lablens never overwrites what a user has."""


class RunError(LablensError):
    """A workflow cannot proceed (no usable image, a split that cannot be made …); the message says why."""
