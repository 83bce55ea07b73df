"""scikit-learn's warnings go to the log, not the console; other warnings are still shown."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from lablens.library_warnings import from_library, library_warnings_to_log


def test_sklearn_warnings_are_logged_not_shown(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.warns(UserWarning, match="own warning") as shown:
        warnings.simplefilter("always")
        with caplog.at_level(logging.INFO, logger="lablens.library"), library_warnings_to_log():
            list(StratifiedKFold(3).split(np.zeros(7), [0, 0, 0, 0, 0, 0, 1]))  # "least populated class"
            warnings.warn("lablens's own warning", UserWarning, stacklevel=1)
    assert [str(w.message) for w in shown] == ["lablens's own warning"]
    assert any("least populated class" in r.getMessage() for r in caplog.records)


def test_from_library_by_category_or_file() -> None:
    from sklearn.exceptions import ConvergenceWarning

    assert from_library(ConvergenceWarning, "/x/lablens/models/classical.py")
    assert from_library(UserWarning, "/venv/site-packages/sklearn/model_selection/_split.py")
    assert not from_library(UserWarning, "/work/lablens/src/lablens/train/trainer.py")
