"""One registry shape: every registry of lablens offers the same register / create / names / suggestions, and
checks parameters the same way. (What each registered family must do is in ``test_check_suite.py``.)"""

from __future__ import annotations

import pytest

from lablens.errors import ParamError, UnknownNameError
from lablens.features.registry import EXTRACTORS
from lablens.fields.detection import DETECTORS
from lablens.fields.presets import FIELD_PRESETS
from lablens.models.classifiers import CLASSIFIERS
from lablens.models.registry import ESTIMATORS
from lablens.phantoms import PHANTOMS
from lablens.presets import STUDY_PRESETS
from lablens.quality.measures import MEASURES
from lablens.registry import Registry
from lablens.synth.registry import GENERATORS

REGISTRIES = {
    "estimators": ESTIMATORS,
    "classifiers": CLASSIFIERS,
    "feature extractors": EXTRACTORS,
    "detectors": DETECTORS,
    "generators": GENERATORS,
    "quality measures": MEASURES,
    "field presets": FIELD_PRESETS,
    "study presets": STUDY_PRESETS,
    "phantom tasks": PHANTOMS,
}
ALL = pytest.mark.parametrize("registry", list(REGISTRIES.values()), ids=list(REGISTRIES))


def test_every_registry_of_lablens_is_listed_here() -> None:
    import importlib
    import pkgutil

    import lablens

    every = {}
    for mod in pkgutil.walk_packages(lablens.__path__, "lablens."):
        if mod.name.startswith(("lablens.service", "lablens.cli")):
            continue  # the web stack: no registries there
        module = importlib.import_module(mod.name)
        every.update({id(v): f"{mod.name}.{k}" for k, v in vars(module).items() if isinstance(v, Registry)})
    missing = sorted(n for i, n in every.items() if i not in {id(r) for r in REGISTRIES.values()})
    assert not missing, f"registries not covered by this suite: {missing}"


@ALL
def test_names_are_sorted_and_each_resolves(registry: Registry) -> None:
    names = registry.names()
    assert names and names == sorted(names)
    for name in names:
        assert name in registry and registry.entry(name).name == name
        assert registry.describe(name).startswith(f"{registry.kind} {name!r}")


@ALL
def test_an_unknown_name_suggests_the_closest(registry: Registry) -> None:
    name = registry.names()[0]
    near = name[:-1] + ("x" if name[-1] != "x" else "y")
    with pytest.raises(UnknownNameError, match=f"unknown {registry.kind.split(' (')[0]}") as err:
        registry.entry(near + "-no-such")
    assert "did you mean" in str(err.value) or "choose one of" in str(err.value)
    assert isinstance(err.value, ValueError)  # code that caught ValueError before still does


@ALL
def test_an_unknown_setting_is_refused_naming_it(registry: Registry) -> None:
    for name, entry in registry.items():
        with pytest.raises(ParamError, match="no_such_setting"):
            registry.create(name, no_such_setting=1)
        if "value" in entry.info:  # a fixed object: built without settings, always the same one
            assert registry.create(name) is registry.value(name)


def test_a_bad_value_names_the_setting_and_a_good_one_is_converted() -> None:
    with pytest.raises(ParamError, match="setting 'degree'"):
        EXTRACTORS.create("zernike", degree="many")
    assert EXTRACTORS.create("zernike", degree="6").degree == 6  # "6" from a spec string


def test_registering_a_name_twice_is_a_bug_not_an_override() -> None:
    r = Registry("thing")
    r.register("a", value=1)
    with pytest.raises(ValueError, match="already registered"):
        r.register("a", value=2)
