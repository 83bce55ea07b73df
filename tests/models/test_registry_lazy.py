from __future__ import annotations

import subprocess
import sys

from lablens.models.registry import _FAMILY_MODULES, ESTIMATORS


def test_the_declared_modules_register_exactly_their_names() -> None:
    declared = {name: module for module, names in _FAMILY_MODULES.items() for name in names}
    actual = {name: entry.factory.__module__ for name, entry in ESTIMATORS.items()}
    assert actual == declared


def _printed(code: str) -> list[str]:
    """What ``code`` prints in a fresh interpreter (nothing imported yet), split into words."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


def test_a_deep_name_imports_its_family_alone() -> None:
    code = (
        "import sys; from lablens.models.registry import get_spec; "
        "print(get_spec('efficientnet_lite0').family.__name__, "
        "'lablens.models.classical' in sys.modules, 'skops' in sys.modules)"
    )
    assert _printed(code) == ["DeepClassifier", "False", "False"]


def test_a_timm_name_resolves_through_the_fallback_and_a_typo_is_refused() -> None:
    code = (
        "from lablens.models.registry import get_spec\n"
        "print(get_spec('mobilenetv3_small_050').family.__name__)\n"
        "try:\n    get_spec('efficientnet_lite9')\nexcept Exception as exc:\n    print(type(exc).__name__)\n"
    )
    assert _printed(code) == ["DeepClassifier", "UnknownNameError"]
