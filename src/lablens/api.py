r"""The Python API, verb for verb the same as the command line.

>>> from lablens import api
>>> result = api.train("data/pbc", "runs/pbc", api.RunConfig())          # doctest: +SKIP
>>> api.evaluate(result.bundles[0], "data/new", "runs/pbc-eval")         # doctest: +SKIP
>>> api.predict(result.bundles[0], ["cells/"], "predictions.csv")        # doctest: +SKIP
>>> api.predict_archive(result.bundles[0], ["archive/"], "runs/reread")  # doctest: +SKIP
>>> api.promote("runs/new/bundle", "runs/pbc/bundle", ["data/locked"], "runs/promotion")  # doctest: +SKIP
>>> cfg = api.RunConfig(compare={"methods": ["hu+haralick+lbp:lightgbm", "finetune[resnet18]"]})
>>> api.compare("data/pbc", "runs/pbc-compare", cfg)                    # doctest: +SKIP
>>> est = api.create_estimator("resnet18", epochs=5)                     # doctest: +SKIP
>>> est.fit(X, y, X_val, y_val, context=api.FitContext(device="cuda"))    # doctest: +SKIP
>>> api.degrade("data/pbc", "runs/pbc-blur", levels="0-4", size=96)       # doctest: +SKIP
>>> api.quality(["slides/"], model="runs/quality/bundle")               # doctest: +SKIP
>>> api.blur_study("data/pbc", "runs/pbc-blur-study", api.RunConfig())   # doctest: +SKIP
>>> api.analyze("runs/pbc/bundle", ["fields/"], "runs/smear-1", task="blood")  # doctest: +SKIP
>>> api.synthesize("data/neu", "runs/gbi-syn", ["gbi"], 500, method="gan")   # doctest: +SKIP
>>> api.synth_study("data/neu", "runs/gbi-study", api.RunConfig(), classes=["gbi"])  # doctest: +SKIP
>>> api.fit_verifier(["bccd/JPEGImages"], "bccd/Annotations", "wbc.json", um_per_px=0.075)  # doctest: +SKIP
>>> api.fields_csv("ana-fields/labels.csv", "ana.csv", sample_regex=r"^([A-Z]+-\d+)")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lablens.config import DataConfig, EvalConfig, RunConfig, build_config, load_config
from lablens.data.manifest import Manifest
from lablens.data.validate import DataReport
from lablens.infer.bundle import Bundle, load_bundle
from lablens.infer.gate import QualityGate
from lablens.infer.predictor import Predictor
from lablens.models.registry import create_estimator, list_estimators
from lablens.progress import SilentProgress
from lablens.service.serve_config import ServeConfig
from lablens.train.context import FitContext
from lablens.workflows.analyze import AnalyzeConfig, AnalyzeResult, analyze
from lablens.workflows.blur_study import BlurStudyResult, blur_study
from lablens.workflows.compare import CompareResult, compare
from lablens.workflows.crop_cells import CropCellsConfig
from lablens.workflows.crop_cells import crop_annotated_cells as crop_cells
from lablens.workflows.degrade import DegradeConfig, DegradeResult, degrade
from lablens.workflows.demo import demo
from lablens.workflows.evaluate import evaluate
from lablens.workflows.export import ExportConfig, export
from lablens.workflows.fields_csv import FieldsCsvConfig, fields_csv
from lablens.workflows.fit_verifier import FitVerifierConfig, FitVerifierResult, fit_verifier
from lablens.workflows.phantom import PhantomConfig, phantom
from lablens.workflows.predict_archive import ArchiveResult, predict_archive
from lablens.workflows.predict_verb import PredictConfig
from lablens.workflows.predict_verb import predict_run as predict
from lablens.workflows.promote import promote
from lablens.workflows.quality import QualityConfig, QualityResult, quality
from lablens.workflows.retrain import RetrainConfig, retrain
from lablens.workflows.suggest import SuggestConfig, SuggestResult, suggest
from lablens.workflows.synth_study import SynthStudyResult, synth_study
from lablens.workflows.synthesize import SynthesisResult, synthesize
from lablens.workflows.train import TrainResult, min_groups_for, train
from lablens.workflows.train_detector import TrainDetectorConfig, train_detector
from lablens.workflows.train_samples import train_samples

if TYPE_CHECKING:
    from lablens.service.admin import ServiceAdmin


def validate_data(
    data: str | Path, data_cfg: DataConfig | None = None, protocol: str = "8:1:1"
) -> tuple[Manifest, DataReport]:
    """Check a dataset: the usable images as a Manifest, and a report of everything skipped and why."""
    from lablens.workflows.reading import read_data

    return read_data(
        data, data_cfg or DataConfig(), SilentProgress(), min_groups_per_class=min_groups_for(protocol)
    )


def models() -> list[str]:
    """``lablens models``: the registered model names (any timm model name works too)."""
    return list_estimators()


def show_config(config: str | Path | None = None) -> RunConfig:
    """``lablens show-config``: the fully resolved configuration."""
    return build_config(config)


def serve(cfg: ServeConfig | None = None, *, banner: bool = True, **settings: Any) -> None:
    """``lablens serve``: run the review service with ``cfg`` (or its settings as keywords) until interrupted.
    The resolved settings are written to ``serve.yaml`` in the service's image storage; ``banner``: say where it
    serves from once it is set up (its database opened and its audit key checked)."""
    import uvicorn

    from lablens.progress import console
    from lablens.service.app import create_app

    cfg = ServeConfig.resolve(cfg, settings)
    where = cfg.where()
    app = create_app(cfg.service_settings(where))
    cfg.write(where.images / "serve.yaml")
    if banner:
        console.print(f"serving {where.describe()}", highlight=False)
    uvicorn.run(app, host=cfg.host, port=cfg.port)


def service_admin(
    home: str | Path | None = None,
    db: str | None = None,
    storage: str | Path | None = None,
    audit_key: str | Path | None = None,
) -> ServiceAdmin:
    """``lablens add-user``, ``users …``, ``audit …``, ``export-reviews``: the installation's administration."""
    from lablens.service.admin import ServiceAdmin

    return ServiceAdmin.open(home, db, storage, audit_key)


__all__ = [
    "AnalyzeConfig",
    "AnalyzeResult",
    "ArchiveResult",
    "BlurStudyResult",
    "Bundle",
    "CompareResult",
    "CropCellsConfig",
    "DataConfig",
    "DegradeConfig",
    "DegradeResult",
    "EvalConfig",
    "ExportConfig",
    "FieldsCsvConfig",
    "FitContext",
    "FitVerifierConfig",
    "FitVerifierResult",
    "PhantomConfig",
    "PredictConfig",
    "Predictor",
    "QualityConfig",
    "QualityGate",
    "QualityResult",
    "RetrainConfig",
    "RunConfig",
    "ServeConfig",
    "SuggestConfig",
    "SuggestResult",
    "SynthStudyResult",
    "SynthesisResult",
    "TrainDetectorConfig",
    "TrainResult",
    "analyze",
    "blur_study",
    "build_config",
    "compare",
    "create_estimator",
    "crop_cells",
    "degrade",
    "demo",
    "evaluate",
    "export",
    "fields_csv",
    "fit_verifier",
    "list_estimators",
    "load_bundle",
    "load_config",
    "models",
    "phantom",
    "predict",
    "predict_archive",
    "promote",
    "quality",
    "retrain",
    "serve",
    "service_admin",
    "show_config",
    "suggest",
    "synth_study",
    "synthesize",
    "train",
    "train_detector",
    "train_samples",
    "validate_data",
]
