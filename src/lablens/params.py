"""Typed hyper-parameters of the model families: one declaration gives the signature, the checks and the messages.

A family declares its parameters once as a :class:`FamilyParams` model. :func:`params_init` turns that into the
scikit-learn ``__init__`` (keyword arguments stored untouched), and :func:`validate_params` checks values against
it, raising a :class:`ParamError` that names each setting and the model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from lablens.config import StrictModel
from lablens.errors import ParamError
from lablens.registry import describe_errors, validate_params

__all__ = ["FamilyParams", "ParamError", "describe_errors", "params_init", "validate_params"]


class FamilyParams(StrictModel):
    """Base of every family's parameter model (unknown names are refused)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def params_init(params: type[BaseModel]) -> Callable[..., None]:
    """An ``__init__`` taking exactly the fields of ``params`` as keyword arguments and storing them untouched.

    scikit-learn reads an estimator's parameters from its ``__init__`` signature; generating it from the one
    declaration keeps names and defaults identical by construction.
    """
    fields = params.model_fields
    defaults = {name: f.get_default(call_default_factory=True) for name, f in fields.items()}

    def __init__(self: Any, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(fields))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected parameter(s) {unknown}")
        for name, default in defaults.items():
            setattr(self, name, kwargs.get(name, default))

    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    keywords = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d) for n, d in defaults.items()]
    __init__.__signature__ = inspect.Signature([self_param, *keywords])  # type: ignore[attr-defined]
    __init__.__doc__ = f"Store the parameters of :class:`{params.__name__}` untouched."
    return __init__
