"""A sample submission read as it streams in, one file at a time, within a memory budget.

The multipart body is parsed while it arrives (python-multipart, the parser Starlette uses, driven directly so that
nothing is spooled to disk). Each file is checked (name, size), its header read for the submission's budget of
decoded pixels, then decoded, cut down to what is stored (the cell at the bundle's size, or the cells detected on a
field) and dropped: however many files a request holds, the server holds one decoded image at a time.

The form fields ``kind``, ``task`` and ``um_per_px`` decide how files are read, so they come before the files
(``name`` may come anywhere); a request that sends them later is refused with 422.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import HTTPException, Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from lablens.data.io import DecodeLimits, ImageError, decode_bytes, probe_size
from lablens.fields.pipeline import (
    FieldInput,
    FieldSetupError,
    FieldSpec,
    FieldWork,
    classify_field,
    detect_image,
    field_spec,
)
from lablens.fields.presets import FieldPreset, get_preset
from lablens.infer.predictor import Scores
from lablens.quality.reference import ImageReference
from lablens.service.settings import UM_PER_PX_RANGE, ServiceSettings
from lablens.service.storage import store_png

if TYPE_CHECKING:
    from lablens.service.registry import ModelEntry

UNSAFE_NAME = re.compile(r"(^|[\\/])\.\.([\\/]|$)|[\\/\x00]|^\s*$")
READING_FIELDS = ("kind", "task", "um_per_px")
MAX_FIELD_BYTES = 1000
#: a ``kind=cells`` submission: each image is one cell, classified whole (the pipeline's whole-frame unit)
SINGLE_CELLS = FieldPreset("cells", None, None, (), 0.0, "differential", description="one cell per image")


@dataclass
class CellRecord:
    """One cell of a submission as the pipeline left it: what is stored and shown."""

    name: str
    image_sha256: str
    proba: np.ndarray  # calibrated, even for a cell given no call (the review page shows it)
    status: str
    quality: float | None
    ood: float | None
    flags: list[dict[str, str]]
    source: dict[str, Any] | None  # field and box of a detected cell
    attention: float | None = None  # bag bundles: the cell's weight in the sample's call


@dataclass
class Submission:
    """What a submission holds once read: its form fields and its cells, classified."""

    fields: dict[str, str] = field(default_factory=lambda: {"kind": "cells", "task": "blood"})
    cells: list[CellRecord] = field(default_factory=list)
    scores: list[Scores] = field(default_factory=list)  # per file, for the sample's verdict
    crops: list[np.ndarray] = field(default_factory=list)  # bag bundles: every cell, for the sample's call
    skipped: list[dict[str, str]] = field(default_factory=list)  # files that are not usable images
    n_files: int = 0
    n_pixels: int = 0  # decoded pixels so far (the budget's count)
    model: ModelEntry | None = None  # the task's active model, chosen when the first file arrives

    @property
    def kept_files(self) -> int:
        return self.n_files - len(self.skipped)


def um_per_px(value: str | None) -> float | None:
    """The field scale, within the physical range of microscope cameras, or a 422 naming it."""
    if value is None or value == "":
        return None
    lo, hi = UM_PER_PX_RANGE
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not (lo <= x <= hi):  # also refuses nan and inf
        raise HTTPException(
            422, f"um_per_px {value!r}: the field scale must lie between {lo} and {hi} µm per pixel"
        )
    return x


class _Reader:
    """Turns finished file parts into classified cells through the field pipeline (runs in a worker thread, off
    the event loop; one model at a time under ``lock``)."""

    def __init__(
        self,
        settings: ServiceSettings,
        model_for: Callable[[str], ModelEntry],
        sub: Submission,
        lock: threading.Lock,
    ) -> None:
        self.settings, self.model_for, self.sub, self.lock = settings, model_for, sub, lock
        self.spec: FieldSpec | None = None
        self.reference: ImageReference | None = None

    def start_files(self) -> None:
        """Check the fields that decide how files are read and choose the task's model (the first file has
        arrived): the same :func:`~lablens.fields.pipeline.field_spec` as ``lablens analyze``."""
        f = self.sub.fields
        self.sub.model = model = self.model_for(f["task"])
        if f["kind"] not in ("cells", "fields"):
            raise HTTPException(
                422, "kind must be 'cells' (one cell per image) or 'fields' (cells are detected)"
            )
        self.scale = um_per_px(f.get("um_per_px"))
        self.reference = ImageReference.from_bundle(model.bundle)
        if f["kind"] == "cells":
            self.spec, _, _ = field_spec(model.bundle, SINGLE_CELLS)
            return
        try:
            preset = get_preset(f["task"].strip())
            if preset.detector is None:
                raise HTTPException(
                    422, f"task {f['task']!r} classifies whole frames; submit them with kind=cells"
                )
            self.spec, _, _ = field_spec(model.bundle, preset, um_per_px=self.scale)
        except KeyError as exc:
            raise HTTPException(422, str(exc.args[0])) from None
        except FieldSetupError as exc:
            raise HTTPException(422, str(exc)) from None

    def add_file(self, name: str, data: bytes) -> None:
        s, sub = self.settings, self.sub
        sub.n_files += 1
        if sub.n_files > s.max_files:
            raise HTTPException(413, f"more than {s.max_files} files; at most {s.max_files} per submission")
        if UNSAFE_NAME.search(name) or len(name) > 255:
            raise HTTPException(400, f"file name {name!r} refused: names may not contain paths")
        size = probe_size(data)
        if size is not None:
            pixels = size[0] * size[1]
            if sub.n_pixels + pixels > s.max_request_pixels:
                raise HTTPException(
                    413,
                    f"{name}: with its {pixels:,} pixels the submission's images would exceed the budget of "
                    f"{s.max_request_pixels:,} decoded pixels; send fewer or smaller images per sample",
                )
            sub.n_pixels += pixels
        try:
            img = decode_bytes(data, DecodeLimits(max_bytes=s.max_image_bytes)).pixels
        except ImageError as exc:
            sub.skipped.append({"name": name, "reason": exc.reason})
            return
        del data
        self._cells(name, img)

    def _cells(self, name: str, img: np.ndarray) -> None:
        """Detect, crop, store and classify the file's cells (the pipeline ``lablens analyze`` runs)."""
        sub, spec, model = self.sub, self.spec, self.sub.model
        assert spec is not None and model is not None
        work = detect_image(sub.n_files - 1, FieldInput(Path(name), "", self.scale), img, spec)
        storage = Path(self.settings.storage)
        for crop, digest in zip(work.crops, work.crop_sha256, strict=True):  # type: ignore[arg-type]
            if store_png(storage, crop) != digest:
                raise AssertionError("a stored cell's digest differs from the pipeline's")
        if spec.bags:  # the sample is called from all its cells at once (see samples._classify_bags)
            sub.crops.extend(work.crops)  # type: ignore[arg-type]
        else:
            with self.lock:
                classify_field(work, model.predictor, self.reference)
            sub.scores.append(work.scores)  # type: ignore[arg-type]
        sub.cells.extend(_records(work, name, spec, storage, img))


def _records(work: FieldWork, name: str, spec: FieldSpec, storage: Path, img: np.ndarray) -> list[CellRecord]:
    """The cells a file gave, in detection order (a single-cell image: itself)."""
    whole = spec.preset.detector is None
    source: dict[str, Any] = {}
    if not whole and len(work.todo):  # the field is kept for the field view (its detections drawn over it)
        source["field_sha256"] = store_png(storage, img)
        if "evaluable" in work.row:  # the field as a whole: a blurred field's cells are all not evaluable
            source |= {
                "field_quality": work.row["quality_score"],
                "field_evaluable": bool(work.row["evaluable"]),
            }
    out = []
    for n, i in enumerate(work.todo):
        sc = work.scores
        out.append(
            CellRecord(
                name=name if whole else f"{name}#{n + 1}",
                image_sha256=work.crop_sha256[n],
                proba=sc.proba[n] if sc is not None else np.zeros(0),
                status=str(sc.status[n]) if sc is not None else "classified",
                quality=None if sc is None or sc.quality is None else float(sc.quality[n]),
                ood=None if sc is None or sc.ood is None else float(sc.ood[n]),
                flags=[f.as_dict() for f in work.flags[n]] if work.flags else [],
                source=None
                if whole
                else {
                    "field": name,
                    "box": [int(v) for v in work.dets[int(i)].box],
                    "detector": spec.preset.detector,
                    **source,
                },
            )
        )
    return out


class _Parts:
    """The multipart parser's callbacks: collect each finished part as (field name, file name, bytes).

    A file part may hold ``settings.max_upload_bytes``, a form field :data:`MAX_FIELD_BYTES`; ``ended`` is set at
    the closing boundary.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.done: list[tuple[str, str | None, bytes]] = []  # finished parts: (field name, file name, bytes)
        self.part: dict[str, Any] = {}
        self.ended = False

    def callbacks(self) -> dict[str, Callable[..., None]]:
        """The callbacks by the names :class:`MultipartParser` calls them."""
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        """Start a new part."""
        self.part.clear()
        self.part.update(headers={}, data=bytearray(), field=b"", value=b"")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        """More of a header's name."""
        self.part["field"] += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        """More of a header's value."""
        self.part["value"] += data[start:end]

    def on_header_end(self) -> None:
        """Keep the finished header (names lower-cased)."""
        part = self.part
        part["headers"][part["field"].lower()] = part["value"]
        part["field"], part["value"] = b"", b""

    def on_headers_finished(self) -> None:
        """Read the part's field and file name from its Content-Disposition and set its size limit."""
        part = self.part
        _, opts = parse_options_header(part["headers"].get(b"content-disposition"))
        part["name"] = opts.get(b"name", b"").decode("utf-8", "replace")
        part["filename"] = opts[b"filename"].decode("utf-8", "replace") if b"filename" in opts else None
        part["limit"] = self.settings.max_upload_bytes if part["filename"] is not None else MAX_FIELD_BYTES

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        """More of the part's body; a 413 past its limit."""
        part = self.part
        if len(part["data"]) + (end - start) > part["limit"]:
            shown = part["filename"] or part["name"]
            raise HTTPException(413, f"{shown}: larger than the {part['limit'] // 1024} KiB limit per file")
        part["data"] += data[start:end]

    def on_part_end(self) -> None:
        """Queue the finished part."""
        self.done.append((self.part["name"], self.part["filename"], bytes(self.part["data"])))

    def on_end(self) -> None:
        """The closing boundary arrived."""
        self.ended = True


async def read_submission(
    request: Request,
    settings: ServiceSettings,
    model_for: Callable[[str], ModelEntry],
    lock: threading.Lock,
) -> Submission:
    """Parse and process a ``multipart/form-data`` submission as it streams in; ``model_for(task)`` is the task's
    active model (an HTTPException when none serves it); ``lock`` lets one batch at a time through a model."""
    ctype, params = parse_options_header(request.headers.get("content-type"))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise HTTPException(415, "a submission is multipart/form-data: the field name, then the files")
    sub = Submission()
    reader = _Reader(settings, model_for, sub, lock)
    parts = _Parts(settings)
    parser = MultipartParser(params[b"boundary"], parts.callbacks())
    files_started = False
    async for chunk in request.stream():
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise HTTPException(400, f"malformed multipart body: {exc}") from None
        while parts.done:
            name, filename, data = parts.done.pop(0)
            if filename is None:  # a form field
                if name in READING_FIELDS and files_started:
                    raise HTTPException(422, f"form field {name!r} must come before the files it applies to")
                sub.fields[name] = data.decode("utf-8", "replace")
                continue
            if name != "files":
                raise HTTPException(422, f"unexpected file field {name!r}; send images as 'files'")
            if not files_started:
                files_started = True
                await run_in_threadpool(reader.start_files)
            await run_in_threadpool(reader.add_file, filename, data)
    if not parts.ended:
        raise HTTPException(
            400, "the multipart body ended before its closing boundary (an upload cut short?)"
        )
    return sub
