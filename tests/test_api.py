"""The Python API mirrors the CLI verbs."""

from __future__ import annotations

from pathlib import Path

from lablens import api

from conftest import write_shape_folder


def test_api_verbs_exist() -> None:
    for verb in (
        "train",
        "evaluate",
        "predict",
        "compare",
        "validate_data",
        "demo",
        "load_bundle",
        "create_estimator",
    ):
        assert callable(getattr(api, verb))


def test_validate_data_api(tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "d", per_class=5)
    (data / "disc" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    manifest, report = api.validate_data(data)
    assert len(manifest) == 15 and report.n_skipped == 1
    assert report.problems[0].path == "disc/broken.png"
