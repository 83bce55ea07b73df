"""``lablens promote``: a candidate against the bundle in service on the same locked cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lablens.cli import app
from lablens.errors import RunError
from lablens.workflows.promote import promote

from conftest import tiny_bundle, write_shape_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("promote")
    good, _ = tiny_bundle(root / "good", "handcrafted")
    weak, _ = tiny_bundle(root / "weak", "test_resnet", epochs=1)  # one epoch on 12 images: near chance
    other, _ = tiny_bundle(root / "other", "handcrafted")
    locked = write_shape_folder(root / "locked", per_class=20, size=40, seed=5)
    return {"good": good, "weak": weak, "locked": locked, "root": root, "other": other}


def test_a_worse_candidate_is_refused_naming_the_classes(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "p"
    with pytest.raises(RunError, match=r"promotion refused: .*sensitivity") as err:
        promote(models["weak"], models["good"], [models["locked"]], out, n_boot=200, progress=False)
    doc = json.loads((out / "promotion.json").read_text())
    assert doc["decision"]["promote"] is False and doc["n"] == 60
    assert doc["accuracy"]["candidate"] < doc["accuracy"]["current"]
    reasons = doc["decision"]["reasons"]
    assert any(r.split(":")[0] in {"disc", "ring", "square"} and "sensitivity" in r for r in reasons), reasons
    assert doc["candidate"]["hash"] != doc["current"]["hash"]
    html = (out / "report.html").read_text()
    assert "Refused" in html and "McNemar" in html and str(err.value).endswith(f"(report: {out})")


def test_an_equal_candidate_is_promoted_and_the_cli_says_so(models: dict[str, Path], tmp_path: Path) -> None:
    doc = promote(
        models["other"], models["good"], [models["locked"]], tmp_path / "p", n_boot=100, progress=False
    )
    assert doc["decision"] == {"promote": True, "reasons": []}

    def cli(candidate: str, out: str):  # type: ignore[no-untyped-def]
        args = [
            "promote",
            str(models[candidate]),
            "--against",
            str(models["good"]),
            "-d",
            str(models["locked"]),
        ]
        return runner.invoke(app, [*args, "-o", str(tmp_path / out), "--bootstrap", "50"])

    r = cli("other", "c")
    assert r.exit_code == 0 and "PROMOTE" in r.output, r.output
    r = cli("weak", "d")
    assert r.exit_code != 0 and "REFUSED" in r.output and "promotion refused" in r.output


def test_bundles_with_other_classes_cannot_be_compared(models: dict[str, Path], tmp_path: Path) -> None:
    import numpy as np

    from lablens.infer.bundle import save_bundle
    from lablens.models.registry import create_estimator

    from conftest import shape_image

    rng = np.random.default_rng(1)
    y = np.array(["disc", "ring"] * 6)
    est = create_estimator("handcrafted", image_size=40).fit(
        np.stack([shape_image(c, rng, 40) for c in y]), y
    )
    save_bundle(tmp_path / "two", est, estimator_name="handcrafted", image_size=40, resize_mode="pad")
    with pytest.raises(RunError, match="call different classes"):
        promote(tmp_path / "two", models["good"], [models["locked"]], tmp_path / "p", progress=False)
