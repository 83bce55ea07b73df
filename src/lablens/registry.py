"""One registry shape for everything lablens builds by name.

Model families, feature extractors, field detectors, generators, quality measures, field presets and phantom
tasks each have a :class:`Registry`. As in timm, a name maps to an :class:`Entry`: the factory (a class or a
function), its typed parameters (a pydantic model: declared by the family, or read from the factory's signature)
and the parameters the name fixes. Every registry offers the same four things:

- ``register(name, …)`` — a decorator for a factory, or ``register(name, value=obj)`` for a fixed object;
- ``create(name, **params)`` — checks every parameter against the entry (a :class:`~lablens.errors.SettingError`
  naming the bad setting and the settings it takes; nothing is dropped silently) and builds the object;
- ``names()`` — what is registered, sorted;
- an :class:`~lablens.errors.UnknownNameError` with the closest names for one that is not registered.

A registry never imports what registers in it at import time: the package that owns it either imports its
members in its ``__init__`` (so the registry is complete whenever the package is imported), or declares with
:meth:`Registry.lazy` which module registers which names, so that looking up one name imports only its module
(loading a deep bundle then never imports the classical stack: scikit-learn's model selection, skops, the
feature extractors); listing the names, or a name no declaration covers, imports them all.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from lablens.errors import ParamError, UnknownNameError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())


def signature_params(factory: Callable[..., Any], name: str) -> type[BaseModel]:
    """A strict pydantic model of ``factory``'s keyword parameters (annotations resolved where they can be)."""
    target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):  # a name only imported for type checking: check names, not types
        hints = {}
    fields: dict[str, Any] = {}
    for p in inspect.signature(target).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            continue
        default = ... if p.default is p.empty else p.default
        fields[p.name] = (hints.get(p.name, Any), default)
    return create_model(f"{name.title().replace('_', '')}Params", __base__=_Strict, **fields)


@dataclass(frozen=True)
class Entry:
    """A registered name: what builds it, its typed parameters, the ones the name fixes, and what it is."""

    name: str
    factory: Callable[..., Any]
    params: type[BaseModel]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)

    def accepts(self, setting: str) -> bool:
        """Whether ``setting`` is one a user may give (fixed ones are not)."""
        return setting in self.params.model_fields and setting not in self.fixed

    def settings(self) -> list[str]:
        return sorted(k for k in self.params.model_fields if self.accepts(k))


class Registry:
    """Names → :class:`Entry` of one kind of thing (``kind`` names it in messages: "model", "detector" …)."""

    def __init__(self, kind: str, unknown: str = "") -> None:
        self.kind = kind
        self.unknown = unknown  # said of a name that is not registered, e.g. "not a timm model name either"
        self._entries: dict[str, Entry] = {}
        self._fallbacks: list[Callable[[str], Entry | None]] = []
        self._lazy: dict[str, list[str]] = {}  # module → the names importing it registers (not yet imported)

    # -- registering ---------------------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        factory: Callable[..., Any] | None = None,
        *,
        value: Any = None,
        params: type[BaseModel] | None = None,
        fixed: Mapping[str, Any] | None = None,
        summary: str = "",
        **info: Any,
    ) -> Any:
        """Register ``factory`` (or, with ``value=``, a fixed object) under ``name``; without either, a decorator."""
        if value is not None:
            entry = Entry(name, lambda: value, _Strict, {}, summary, {"value": value, **info})
            self._add(entry)
            return value

        def deco(f: Callable[..., Any]) -> Callable[..., Any]:
            model = params or signature_params(f, name)
            unknown = set(fixed or {}) - set(model.model_fields)
            if unknown:
                raise ValueError(
                    f"{self.kind} {name!r} fixes parameters {sorted(unknown)} that it does not have"
                )
            self._add(Entry(name, f, model, dict(fixed or {}), summary, info))
            return f

        return deco if factory is None else deco(factory)

    def _add(self, entry: Entry) -> None:
        known = self._entries.get(entry.name)
        same = known is not None and (
            known.info.get("value") is entry.info.get("value") is not None  # the same object again
            or (
                known.factory is entry.factory and dict(known.fixed) == dict(entry.fixed)
            )  # a module re-imported
        )
        if known is not None and not same:
            raise ValueError(f"{self.kind} name {entry.name!r} is already registered")
        self._entries[entry.name] = entry

    def lazy(self, module: str, names: Iterable[str]) -> None:
        """Declare that importing ``module`` registers ``names``: it is imported the first time one of them is
        looked up, or when every name is needed (listing, an unknown name), so that using one entry does not
        import the libraries of all the others."""
        self._lazy[module] = list(names)

    def _import(self, modules: Iterable[str]) -> None:
        for module in list(modules):
            if self._lazy.pop(module, None) is not None:
                importlib.import_module(module)

    def _import_all(self) -> None:
        self._import(list(self._lazy))

    def _load(self, name: str) -> None:
        """Import what registers ``name``: the module declared for it, else every declared module (another one,
        or a fallback it brings, may know the name)."""
        if name in self._entries:
            return
        self._import(m for m, names in self._lazy.items() if name in names)
        if name not in self._entries:
            self._import_all()

    def fallback(self, resolver: Callable[[str], Entry | None]) -> None:
        """Resolve names not registered one by one (e.g. every timm model name)."""
        self._fallbacks.append(resolver)

    # -- looking up ----------------------------------------------------------------------------------------------
    def names(self, sort: bool = True) -> list[str]:
        """The registered names, sorted (or in the order they were registered)."""
        self._import_all()
        return sorted(self._entries) if sort else list(self._entries)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self._load(name)
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._import_all()
        return len(self._entries)

    def entry(self, name: str) -> Entry:
        """The entry of ``name``; an :class:`UnknownNameError` naming the closest registered names otherwise."""
        self._load(name)
        if name in self._entries:
            return self._entries[name]
        for resolve in self._fallbacks:
            found = resolve(name)
            if found is not None:
                return found
        close = difflib.get_close_matches(str(name), self.names(), n=3)
        hint = (
            f"; did you mean {', '.join(close)}?" if close else f"; choose one of {', '.join(self.names())}"
        )
        why = f": {self.unknown}" if self.unknown else ""
        raise UnknownNameError(f"unknown {self.kind} {name!r}{why}{hint}")

    def describe(self, name: str) -> str:
        """``model 'resnet18' (a timm network …)``: how messages name an entry (its summary, when it was given one)."""
        entry = self.entry(name)
        return f"{self.kind} {name!r}" + (f" ({entry.summary})" if entry.summary else "")

    def check(self, name: str, params: Mapping[str, Any]) -> BaseModel:
        """``params`` for ``name`` validated against its typed parameters; a :class:`SettingError` naming each
        setting that does not fit (a fixed one given another value, an unknown one, a bad value)."""
        entry = self.entry(name)
        clashing = [k for k, v in params.items() if k in entry.fixed and v != entry.fixed[k]]
        if clashing:
            shown = ", ".join(f"{k}={entry.fixed[k]!r}" for k in clashing)
            raise ParamError(f"{self.describe(name)} fixes {shown}")
        return validate_params(entry.params, {**entry.fixed, **params}, self.describe(name), entry.settings())

    def create(self, name: str, **params: Any) -> Any:
        """A new object of ``name`` built with exactly ``params``, checked and converted to their declared types."""
        checked = self.check(name, params)
        entry = self.entry(name)
        given = {k: getattr(checked, k) for k in params}  # as validated: "16" from a spec string is 16
        return entry.factory(**{**entry.fixed, **given})

    def value(self, name: str) -> Any:
        """The object registered with ``value=`` under ``name``."""
        return self.entry(name).info["value"]

    def items(self) -> list[tuple[str, Entry]]:
        return [(n, self._entries[n]) for n in self.names()]


def validate_params(
    params: type[BaseModel], values: Mapping[str, Any], owner: str, accepted: list[str] | None = None
) -> Any:
    """``params`` validated from ``values``, or a :class:`~lablens.errors.ParamError` naming each bad setting and
    ``owner`` (``accepted``: the settings to list when one is unknown; default every field)."""
    try:
        return params.model_validate(dict(values))
    except ValidationError as exc:
        raise ParamError(
            f"{owner}: {describe_errors(exc, accepted or sorted(params.model_fields))}"
        ) from None


def describe_errors(exc: ValidationError, accepted: list[str]) -> str:
    """One clause per problem: unknown settings (with the accepted ones), bad values with the reason."""
    unknown, bad = [], []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "?"
        if err["type"] == "extra_forbidden":
            unknown.append(repr(name))
        elif err["type"] == "missing":
            bad.append(f"setting {name!r} is required")
        else:
            bad.append(f"setting {name!r} = {err.get('input')!r}: {err['msg'].removeprefix('Value error, ')}")
    if unknown:
        takes = ", ".join(accepted) if accepted else "no settings"
        bad.append(f"no setting {', '.join(unknown)} (it takes {takes})")
    return "; ".join(bad)
