"""Archive jobs (``lablens predict … --out DIR``): Parquet shards, bad files, resume after SIGKILL, engines agree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lablens.cli import app
from lablens.errors import RunError
from lablens.infer.job import SHARDS, SUCCESS
from lablens.infer.onnx_export import export_onnx
from lablens.nn.tta import TtaPolicy
from lablens.phantoms import get_task, write_phantoms
from lablens.workflows.predict_archive import predict_archive

from conftest import require_ray, tiny_bundle

runner = CliRunner()
N_PHANTOMS = 240
BAD = {"bad.png": b"not an image", "empty.jpg": b"", "cut.png": None}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A bundle with adaptive TTA and its ONNX export, 240 blood-cell phantoms and three bad files."""
    root = tmp_path_factory.mktemp("archive")
    bundle, _ = tiny_bundle(root / "bundle", tta=True, tta_margin=0.5)
    export_onnx(bundle)
    images = root / "images"
    write_phantoms(get_task("blood-cells"), images, n=N_PHANTOMS, seed=3, size=40)
    (images / "manifest.csv").unlink()
    png = next(images.rglob("*.png")).read_bytes()
    for name, data in BAD.items():
        (images / name).write_bytes(data if data is not None else png[: len(png) // 3])
    return {"root": root, "bundle": bundle, "images": images}


def _rows(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out).sort_values("row").reset_index(drop=True)


def test_rows_cover_every_input_with_its_outcome(archive: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "job"
    res = predict_archive(
        archive["bundle"], [archive["images"], tmp_path / "nowhere"], out, shard_size=50, progress=False
    )
    df = _rows(out)
    n = N_PHANTOMS + len(BAD) + 1
    assert len(df) == n and df["row"].tolist() == list(range(n)) and len(res.parts) == 5
    assert res.summary["images"] == n and res.summary["classified"] == N_PHANTOMS
    assert res.summary["skipped_by_kind"] == {"empty": 1, "missing_file": 1, "not_image": 1, "truncated": 1}
    ok = df[df.status == "classified"]
    assert ok["sha256"].str.len().eq(64).all() and ok["class_1"].notna().all()
    assert (ok["prob_1"] >= ok["prob_2"]).all() and (ok["prob_2"] >= ok["prob_3"]).all()
    assert set(ok["tta_views"]) <= {1, 8} and ok["bundle_hash"].nunique() == 1
    bad = df[df.status == "skipped"].set_index("path")
    assert bad.loc[str(archive["images"] / "empty.jpg"), "error_reason"] == "empty file (0 bytes)"
    assert bad.loc[str(tmp_path / "nowhere"), "error_kind"] == "missing_file"
    assert bad["class_1"].isna().all() and bad["error_reason"].notna().all()
    assert json.loads((out / SUCCESS).read_text())["tta"]["policy"] == "adaptive"


def test_single_file_and_archive_outputs_agree(archive: dict[str, Path], tmp_path: Path) -> None:
    from lablens.workflows.predict import predict

    predict(archive["bundle"], [archive["images"]], tmp_path / "p.csv", progress=False)
    single = pd.read_csv(tmp_path / "p.csv")
    predict_archive(archive["bundle"], [archive["images"]], tmp_path / "job", shard_size=64, progress=False)
    df = _rows(tmp_path / "job")
    df = df[df.status == "classified"].set_index("path").loc[single["path"]]
    assert (df["class_1"].to_numpy() == single["class_1"].to_numpy()).all()
    assert abs(df["prob_1"].to_numpy() - single["prob_1"].to_numpy()).max() < 1e-6


def test_manifests_lists_and_globs_are_sources(archive: dict[str, Path], tmp_path: Path) -> None:
    files = sorted(str(p.relative_to(archive["images"])) for p in archive["images"].glob("*/*.png"))[:5]
    (archive["images"] / "few.csv").write_text("path,note\n" + "".join(f"{f},x\n" for f in files))
    (archive["images"] / "few.txt").write_text("# a comment\n\n" + "\n".join(files[:2]) + "\n")
    pattern = str(archive["images"] / "basophil" / "*.png")
    try:
        sources = [archive["images"] / "few.csv", archive["images"] / "few.txt", pattern]
        predict_archive(archive["bundle"], sources, tmp_path / "job", shard_size=8, progress=False)
    finally:
        (archive["images"] / "few.csv").unlink()
        (archive["images"] / "few.txt").unlink()
    df = _rows(tmp_path / "job")
    n_glob = len(list((archive["images"] / "basophil").glob("*.png")))
    assert len(df) == 5 + 2 + n_glob and (df.status == "classified").all()
    assert df["path"].iloc[0] == str(archive["images"] / files[0])
    with pytest.raises(RunError, match="matches no file"):
        predict_archive(archive["bundle"], [str(tmp_path / "*.png")], tmp_path / "j2", progress=False)


def test_a_rerun_resumes_and_refuses_other_settings(archive: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "job"
    predict_archive(archive["bundle"], [archive["images"]], out, shard_size=40, progress=False)
    full = _rows(out)
    lines = (out / SHARDS).read_text().splitlines()
    # as if killed after three shards, the last record cut short and a part written but never recorded
    (out / SHARDS).write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
    (out / SUCCESS).unlink()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    res = predict_archive(archive["bundle"], [archive["images"]], out, shard_size=40, progress=False)
    assert res.summary["shards_resumed"] == 3 and res.summary["images_this_run"] == len(full) - 120
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert all(
        after[n] == before[n] for n in ("part-00000.parquet", "part-00001.parquet", "part-00002.parquet")
    )
    pd.testing.assert_frame_equal(_rows(out), full)
    again = predict_archive(archive["bundle"], [archive["images"]], out, shard_size=40, progress=False)
    assert again.summary == res.summary  # complete: nothing runs
    with pytest.raises(RunError, match="another top_k"):
        predict_archive(archive["bundle"], [archive["images"]], out, shard_size=40, top_k=2, progress=False)
    with pytest.raises(RunError, match="another shard_size"):
        predict_archive(archive["bundle"], [archive["images"]], out, shard_size=41, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("keep")
    with pytest.raises(RunError, match="not a lablens predict job"):
        predict_archive(archive["bundle"], [archive["images"]], tmp_path / "other", progress=False)
    assert (tmp_path / "other" / "mine.txt").read_text() == "keep"


def _cli(bundle: Path, images: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "lablens.cli", "predict", str(bundle), str(images), "--out", str(out)]


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_rows(
    archive: dict[str, Path], tmp_path: Path
) -> None:
    # torch with all 8 views: slow enough to be killed mid-run
    args = [
        "--shard-size",
        "12",
        "--batch-size",
        "4",
        "--workers",
        "1",
        "--backend",
        "torch",
        "--tta",
        "full",
        "-q",
    ]
    ref = tmp_path / "ref"
    kw = {"shard_size": 12, "batch_size": 4, "workers": 1, "backend": "torch", "tta": TtaPolicy(8)}
    predict_archive(archive["bundle"], [archive["images"]], ref, progress=False, **kw)
    out = tmp_path / "killed"
    proc = subprocess.Popen([*_cli(archive["bundle"], archive["images"], out), *args])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / SHARDS).is_file() and len((out / SHARDS).read_text().splitlines()) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the job finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / SUCCESS).exists()
    done = len((out / SHARDS).read_text().splitlines())
    assert done < len(list(ref.glob("part-*.parquet")))
    subprocess.run([*_cli(archive["bundle"], archive["images"], out), *args], check=True)
    rows = _rows(out)
    assert rows["row"].is_unique and rows["path"].is_unique
    pd.testing.assert_frame_equal(rows, _rows(ref))


def test_cli_refuses_archive_options_for_a_csv_and_runs_a_folder(
    archive: dict[str, Path], tmp_path: Path
) -> None:
    def run(out: str, *extra: str):  # type: ignore[no-untyped-def]
        args = ["predict", str(archive["bundle"]), str(archive["images"]), "-o", str(tmp_path / out)]
        return runner.invoke(app, [*args, *extra])

    r = run("p.csv", "--engine", "ray")
    assert r.exit_code != 0 and "--engine apply to a folder --out" in r.output
    r = run("j", "--actors", "2")
    assert r.exit_code != 0 and "--actors apply only with --engine ray" in r.output
    r = run("j", "--tta", "full")
    assert r.exit_code == 0, r.output
    assert "skipped" in r.output and "images/s" in r.output and "TTA full" in r.output
    assert (_rows(tmp_path / "j").query("status == 'classified'")["tta_views"] == 8).all()


def test_ray_engine_writes_the_local_rows(archive: dict[str, Path], tmp_path: Path) -> None:
    require_ray()
    from lablens.infer.ray_engine import RaySettings

    local = tmp_path / "local"
    predict_archive(archive["bundle"], [archive["images"]], local, shard_size=50, progress=False)
    distributed = tmp_path / "ray"
    res = predict_archive(
        archive["bundle"],
        [archive["images"]],
        distributed,
        shard_size=50,
        engine="ray",
        ray=RaySettings(num_cpus=2),
        progress=False,
    )
    assert res.summary["engine"] == "ray" and res.summary["cluster"]["CPU"] == 2
    pd.testing.assert_frame_equal(_rows(distributed), _rows(local))
    assert res.summary["skipped_by_kind"] == {"empty": 1, "not_image": 1, "truncated": 1}


def test_ray_settings_that_cannot_run_are_refused_with_the_reason(
    archive: dict[str, Path], tmp_path: Path
) -> None:
    require_ray()
    from lablens.infer.ray_engine import RaySettings

    with pytest.raises(RunError, match="leave no CPU for decoding"):
        predict_archive(
            archive["bundle"],
            [archive["images"]],
            tmp_path / "job",
            engine="ray",
            ray=RaySettings(num_cpus=2, actor_cpus=2),
            progress=False,
        )


def test_a_damaged_job_file_is_named_not_a_traceback(archive: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "job"
    out.mkdir()
    (out / "_job.json").write_text("{broken")
    with pytest.raises(RunError, match=r"_job.json is damaged .* choose a new --out"):
        predict_archive(archive["bundle"], [archive["images"]], out, progress=False)
