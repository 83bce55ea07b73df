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

from lablens.config import DataConfig, EvalConfig, RunConfig, load_config
from lablens.data.manifest import Manifest
from lablens.data.validate import DataReport, load_dataset
from lablens.infer.bundle import Bundle, load_bundle
from lablens.infer.predictor import Predictor
from lablens.quality.gate import QualityGate
from lablens.registry import create_estimator, list_estimators
from lablens.train.context import FitContext
from lablens.workflows.analyze import AnalyzeResult, analyze
from lablens.workflows.blur_study import BlurStudyResult, blur_study
from lablens.workflows.compare import CompareResult, compare
from lablens.workflows.degrade import DegradeResult, degrade
from lablens.workflows.demo import demo
from lablens.workflows.evaluate import evaluate
from lablens.workflows.fit_verifier import FitVerifierResult, fit_verifier
from lablens.workflows.predict import predict
from lablens.workflows.predict_archive import ArchiveResult, predict_archive
from lablens.workflows.promote import promote
from lablens.workflows.quality import QualityResult, quality
from lablens.workflows.synth_study import SynthStudyResult, synth_study
from lablens.workflows.synthesize import SynthesisResult, synthesize
from lablens.workflows.train import TrainResult, min_groups_for, train


def validate_data(
    data: str | Path, data_cfg: DataConfig | None = None, protocol: str = "8:1:1"
) -> tuple[Manifest, DataReport]:
    """Check a dataset: the usable images as a Manifest, and a report of everything skipped and why."""
    from lablens.workflows.common import limits_from

    d = data_cfg or DataConfig()
    return load_dataset(
        data,
        layout=d.layout,
        path_column=d.path_column,
        label_column=d.label_column,
        group_column=d.group_column,
        group_regex=d.group_regex,
        reader_column=d.reader_column,
        limits=limits_from(d),
        min_groups_per_class=min_groups_for(protocol),
    )


__all__ = [
    "AnalyzeResult",
    "ArchiveResult",
    "BlurStudyResult",
    "Bundle",
    "CompareResult",
    "DataConfig",
    "DegradeResult",
    "EvalConfig",
    "FitContext",
    "FitVerifierResult",
    "Predictor",
    "QualityGate",
    "QualityResult",
    "RunConfig",
    "SynthStudyResult",
    "SynthesisResult",
    "TrainResult",
    "analyze",
    "blur_study",
    "compare",
    "create_estimator",
    "degrade",
    "demo",
    "evaluate",
    "fit_verifier",
    "list_estimators",
    "load_bundle",
    "load_config",
    "predict",
    "predict_archive",
    "promote",
    "quality",
    "synth_study",
    "synthesize",
    "train",
    "validate_data",
]
