"""Shared fixtures: an isolated pixel cache, offline hub, and tiny learnable image folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from sqlalchemy import create_engine, text

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Set before any test module imports timm / huggingface_hub, which read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach the network
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["LABLENS_CACHE"] = str(tmp_path_factory.mktemp("lablens-cache"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own installation folder (service database, images, audit key, default outputs):
    nothing reaches the user's real one, and no test finds another's audit key."""
    home = tmp_path_factory.mktemp("lablens-home")
    monkeypatch.setenv("LABLENS_HOME", str(home))
    return home


def shape_image(label: str, rng: np.random.Generator, size: int = 40) -> np.ndarray:
    """A small, easily learnable image: a disc, a square or a ring on a noisy pale background."""
    img = np.full((size, size, 3), 220, np.uint8)
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    c = size // 2 + int(rng.integers(-3, 4))
    r = size // 4 + int(rng.integers(-2, 3))
    colour = tuple(int(v) for v in rng.integers(60, 140, 3))
    if label == "disc":
        cv2.circle(img, (c, c), r, colour, -1)
    elif label == "square":
        cv2.rectangle(img, (c - r, c - r), (c + r, c + r), colour, -1)
    else:
        cv2.circle(img, (c, c), r, colour, 3)
    return img


def write_shape_folder(
    root: Path,
    per_class: int = 12,
    size: int = 40,
    seed: int = 0,
    classes: tuple[str, ...] = ("disc", "ring", "square"),
) -> Path:
    rng = np.random.default_rng(seed)
    for label in classes:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = shape_image(label, rng, size)
            cv2.imwrite(str(root / label / f"{label}_{i:03d}.png"), img[:, :, ::-1])
    return root


@pytest.fixture
def shapes_folder(tmp_path: Path) -> Path:
    return write_shape_folder(tmp_path / "shapes")


def shared_data(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(
            f"real data not available: {path} is absent (tests on ../shared/data skip on a fresh machine)"
        )
    return path


def folder_digest(folder: Path) -> str:
    """One hash of every file's name and bytes under ``folder`` (to show inputs were only read)."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def require_ray() -> None:
    """Skip a Ray test when Ray Data is not installed, saying how to get it; fail instead under ``.ci/run``
    (``LABLENS_TEST_REQUIRE_RAY=1``), where the test extra installs it and a skip would hide a broken engine."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        if os.environ.get("LABLENS_TEST_REQUIRE_RAY"):
            pytest.fail(
                "LABLENS_TEST_REQUIRE_RAY is set but Ray Data is not installed (pip install -e '.[test]')"
            )
        pytest.skip('the Ray engine needs the extra: pip install "lablens[ray]"')


def tiny_bundle(
    folder: Path, model: str = "test_resnet", size: int = 32, temperature: float = 1.0, **params
) -> tuple[Path, np.ndarray]:
    """A bundle fitted in seconds on 12 shape images (3 classes), and those images.

    Deep models train one epoch on the CPU; ``params`` go to the estimator (e.g. ``tta=True``).
    """
    from lablens.infer.bundle import save_bundle
    from lablens.models.registry import create_estimator
    from lablens.train.context import FitContext

    rng = np.random.default_rng(0)
    y = np.array(["disc", "ring", "square"] * 4)
    X = np.stack([shape_image(c, rng, size) for c in y])
    if model != "handcrafted":
        params = {"epochs": 1, "batch_size": 4, "augment": None, **params}
    est = create_estimator(model, image_size=size, **params).fit(X, y, context=FitContext(device="cpu"))
    save_bundle(
        folder,
        est,
        estimator_name=model,
        image_size=size,
        resize_mode="pad",
        temperature=temperature,
        training={},
        metrics={},
    )
    return folder, X


def mil_fields_csv(folder: Path, seed: int = 6, n: int = 32) -> Path:
    """Phantom ANA fields of two patterns at 256 px, one field per sample (ids with leading zeros), as the fields
    CSV ``lablens train --label-level sample`` reads; the phantoms' ``manifest.csv`` is in ``folder / "f"``."""
    import pandas as pd

    from lablens.phantoms import get_task
    from lablens.phantoms.write import write_phantoms

    write_phantoms(get_task("ana-hep2"), folder / "f", n=n, seed=seed, fields=True, size=256)
    man = pd.read_csv(folder / "f" / "manifest.csv", dtype=str)
    man = man[man["label"].isin(["centromere", "homogeneous"])].reset_index(drop=True)
    pd.DataFrame(
        {"path": "f/" + man["path"], "sample": [f"{i:03d}" for i in range(len(man))], "label": man["label"],
         "um_per_px": man["field_um"].astype(float) / 256}
    ).to_csv(folder / "fields.csv", index=False)  # fmt: skip
    return folder / "fields.csv"


def tiny_mil_bundle(folder: Path, seed: int = 6) -> tuple[Path, Path]:
    """A multiple-instance ANA bundle trained in seconds (one epoch, ``lablens train --label-level sample``) on
    :func:`mil_fields_csv`; returns the bundle and the phantom fields' folder."""
    from typer.testing import CliRunner

    from lablens.cli import app as cli

    fields = mil_fields_csv(folder, seed)
    (folder / "c.yaml").write_text(
        "model:\n  params: {model_name: test_resnet, cells_per_bag: 4, bags_per_sample: 2}\n"
        "train: {epochs: 1, augment: null, patience: null}\neval: {bootstrap: 20}\n"
    )
    r = CliRunner().invoke(
        cli,
        ["train", str(fields), "--out", str(folder / "run"), "--label-level", "sample",
         "--task", "ana", "--image-size", "32", "--split", "2:1:1", "--config", str(folder / "c.yaml"),
         "--device", "cpu", "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    return folder / "run" / "bundle", folder / "f"


# -- field detectors ---------------------------------------------------------------------------------------------
CYTO_SIZE = 512
#: training of the session's learned whole-cell detector: phantom fields (a third negative, left out) and epochs
LEARNED_FIELDS, LEARNED_EPOCHS = 45, 16


def cyto_phantom_fields(root: Path, n: int, seed: int) -> Path:
    """``n`` cytoplasmic-pattern IIF phantom fields (a third negative) with their cells' boxes (``cells.csv``)."""
    from lablens.phantoms import get_task
    from lablens.phantoms.write import write_phantoms

    write_phantoms(get_task("ana-hep2-cyto"), root, n=n, seed=seed, fields=True, size=CYTO_SIZE)
    return root


def cyto_recall(root: Path, detector: str, **kwargs: object) -> dict[str, float]:
    """Recall at box IoU >= 0.5 per pattern of a registered detector on the positive fields of ``root``."""
    import pandas as pd

    from lablens.data.io import read_image
    from lablens.evaluate.detection import Counts, score_image
    from lablens.fields.annotations import read_phantom_cells
    from lablens.fields.detection import create_detector

    man = pd.read_csv(root / "manifest.csv", dtype=str)
    truth = read_phantom_cells(root / "cells.csv")
    totals: dict[str, dict[str, Counts]] = {}
    for row in man[man["label"] != "negative"].itertuples():
        img = read_image(root / row.path).pixels
        found = create_detector(detector, um_per_px=float(row.field_um) / CYTO_SIZE, **kwargs).detect(img)
        score_image(
            [("cell", d.box, d.score) for d in found],
            [("cell", b) for _, b in truth[row.path]],
            ["cell"],
            0.5,
            totals.setdefault(row.label, {}),
        )
    return {label: t["cell"].recall for label, t in totals.items()}


@pytest.fixture(scope="session")
def learned_cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whole-cell detector learned from the boxes of phantom fields of another seed than any test's (bundle)."""
    import pandas as pd

    from lablens.data.io import read_image
    from lablens.fields.annotations import read_phantom_cells
    from lablens.fields.learned import LearnedDetector
    from lablens.train.context import FitContext

    root = cyto_phantom_fields(tmp_path_factory.mktemp("cyto-train"), n=LEARNED_FIELDS, seed=4)
    man = pd.read_csv(root / "manifest.csv", dtype=str)
    man = man[man["label"] != "negative"]
    truth = read_phantom_cells(root / "cells.csv")
    det = LearnedDetector(epochs=LEARNED_EPOCHS, validation_fraction=0.0).fit(
        [read_image(root / p).pixels for p in man["path"]],
        [[b for _, b in truth[p]] for p in man["path"]],
        um_per_px=[float(v) / CYTO_SIZE for v in man["field_um"]],
        context=FitContext(device="cpu"),
    )
    out = tmp_path_factory.mktemp("learned") / "detector"
    det.save(out)
    return out


# -- the review service ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def service_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    return tiny_bundle(tmp_path_factory.mktemp("svc") / "b")


def service_db_url(kind: str, tmp_path: Path) -> str:
    """A fresh, empty database of ``kind``; PostgreSQL from LABLENS_TEST_POSTGRES_URL (set by .ci/run)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'lablens.db'}"
    url = os.environ.get("LABLENS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL: set LABLENS_TEST_POSTGRES_URL (.ci/run starts one with .ci/postgres.sh)")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, service_bundle: tuple[Path, np.ndarray], tmp_path: Path) -> dict:
    """A running app (in-process client) with tina (technician), rita (reviewer) and adam (admin)."""
    from lablens.service.app import ServiceSettings

    settings = ServiceSettings(
        bundle=str(service_bundle[0]),
        db_url=service_db_url(request.param, tmp_path),
        storage=str(tmp_path / "images"),
        max_upload_bytes=20_000,
        min_confidence=0.0,
    )
    return {**start_service(settings), "images": service_bundle[1], "tmp": tmp_path}


def start_service(settings: Any, tokens: dict[str, str] | None = None) -> dict:
    """The app for ``settings`` (in-process client) with tina (technician), rita (reviewer) and adam (admin);
    ``tokens`` of a service started before on the same database reuse its users."""
    from fastapi.testclient import TestClient

    from lablens.service.app import create_app
    from lablens.service.auth import create_user
    from lablens.service.db import sessions

    app = create_app(settings)
    if tokens is None:
        tokens = {}
        with sessions(app.state.engine)() as s:
            for name, role in (("tina", "technician"), ("rita", "reviewer"), ("adam", "admin")):
                tokens[role] = create_user(s, app.state.service.audit_key, name, role)
            s.commit()
    client = TestClient(app)
    auth = {role: {"Authorization": f"Bearer {t}"} for role, t in tokens.items()}
    return {"client": client, "auth": auth, "app": app, "tokens": tokens}
