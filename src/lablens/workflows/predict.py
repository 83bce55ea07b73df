"""``lablens predict``: image files or folders → ranked calibrated probabilities in CSV or JSON (small jobs; an
archive streams to Parquet shards: :mod:`lablens.workflows.predict_archive`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lablens.errors import RunError
from lablens.infer.bundle import load_bundle
from lablens.infer.gate import QualityGate
from lablens.infer.ood import DEFAULT_ALPHA
from lablens.infer.predictor import PredictionResult, Predictor, ood_summary, write_predictions
from lablens.nn.tta import TtaPolicy
from lablens.progress import console, make_progress
from lablens.workflows.predict_archive import print_ood_verdict
from lablens.workflows.printing import warn
from lablens.workflows.reading import no_usable_image


def predict(
    bundle: str | Path,
    inputs: Iterable[str | Path],
    out: str | Path,
    *,
    top_k: int = 3,
    batch_size: int = 64,
    device: str = "auto",
    overwrite: bool = False,
    quality: str | Path | None = None,
    max_level: float = 2.5,
    backend: str = "auto",
    tta: TtaPolicy | None = None,
    ood_alpha: float | None = DEFAULT_ALPHA,
    progress: bool = True,
) -> PredictionResult:
    """Classify every readable image in ``inputs``; write ``out`` (``.csv`` or ``.json``).

        Unreadable inputs are reported (file and reason), skipped and counted; with CSV output they are
        also listed in ``<out>.skipped.csv``. With ``quality`` (a blur-level bundle), images whose quality score
        exceeds ``max_level`` are reported as not evaluable instead of classified; a ``multitask`` bundle's own
    quality head does this without ``quality``. A bundle's out-of-distribution guard flags images unlike its
    training images (``ood_alpha``: its flag rate on images like them; None: off) and judges the whole set.
    """
    out = Path(out)
    if out.suffix.lower() not in (".csv", ".json"):
        raise RunError(f"{out}: the output must end in .csv or .json")
    if out.exists() and not overwrite:
        raise RunError(f"{out} exists; choose another --out (or pass --overwrite)")
    if top_k < 1:
        raise RunError("--top-k must be at least 1")
    b = load_bundle(bundle)
    gate = QualityGate.for_bundle(b, quality, max_level)
    with make_progress(progress) as prog:
        try:
            predictor = Predictor.prepared(
                b,
                warn,
                batch_size=batch_size,
                device=device,
                gate=gate,
                backend=backend,
                tta=tta,
                ood_alpha=ood_alpha,
            )
        except ValueError as exc:
            raise RunError(str(exc)) from None
        result = predictor.predict_files(inputs, progress=prog)
    if not result.paths and not result.skipped:
        raise RunError("no image files found in the given paths")
    if not result.paths:
        raise RunError(no_usable_image(result.skipped))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_predictions(result, out, top_k, b)
    if progress:
        for s in result.skipped:
            console.print(
                f"  [yellow]skipped[/yellow] {s.path}: {s.reason} [dim]({s.kind})[/dim]", highlight=False
            )
        gated = f", {result.n_not_evaluable} not evaluable (quality above {max_level:g})" if gate else ""
        if result.ood is not None:
            gated += f", {result.n_out_of_distribution} out of distribution"
        console.print(
            f"{int(result.evaluable.sum())} images classified{gated}, "
            f"{len(result.skipped)} skipped → {out} (bundle {b.short_hash}, {predictor.backend})"
        )
        if result.ood is not None:
            print_ood_verdict(ood_summary(result))
    return result
