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
from lablens.data.preprocess import to_square
from lablens.fields.crops import crop_cells
from lablens.fields.detection import create_detector
from lablens.fields.presets import get_preset
from lablens.service.settings import UM_PER_PX_RANGE, ServiceSettings
from lablens.service.storage import store_png

if TYPE_CHECKING:
    from lablens.service.registry import ModelEntry

UNSAFE_NAME = re.compile(r"(^|[\\/])\.\.([\\/]|$)|[\\/\x00]|^\s*$")
READING_FIELDS = ("kind", "task", "um_per_px")
MAX_FIELD_BYTES = 1000


@dataclass
class Submission:
    """What a submission holds once read: its form fields and the cells to classify and store."""

    fields: dict[str, str] = field(default_factory=lambda: {"kind": "cells", "task": "blood"})
    names: list[str] = field(default_factory=list)  # one per cell
    crops: list[np.ndarray] = field(default_factory=list)  # cells at the bundle's size
    sources: list[dict[str, Any] | None] = field(default_factory=list)  # field and box of detected cells
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
    """Turns finished file parts into cells (runs in a worker thread, off the event loop)."""

    def __init__(
        self, settings: ServiceSettings, model_for: Callable[[str], ModelEntry], sub: Submission
    ) -> None:
        self.settings, self.model_for, self.sub = settings, model_for, sub
        self.detector: Any = None

    def start_files(self) -> None:
        """Check the fields that decide how files are read and choose the task's model (the first file has
        arrived)."""
        f = self.sub.fields
        self.sub.model = self.model_for(f["task"])
        self.bundle = self.sub.model.bundle
        if f["kind"] not in ("cells", "fields"):
            raise HTTPException(
                422, "kind must be 'cells' (one cell per image) or 'fields' (cells are detected)"
            )
        scale = um_per_px(f.get("um_per_px"))
        if f["kind"] == "fields":
            try:
                preset = get_preset(f["task"])
            except KeyError as exc:
                raise HTTPException(422, str(exc.args[0])) from None
            if preset.detector is None:
                raise HTTPException(
                    422, f"task {f['task']!r} classifies whole frames; submit them with kind=cells"
                )
            self.preset, self.scale = preset, scale or preset.um_per_px
            self.detector = create_detector(preset.detector, um_per_px=self.scale, **preset.detector_kwargs)

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
        size, mode, sub = self.bundle.image_size, self.bundle.resize_mode, self.sub
        if self.detector is None:
            sub.names.append(name)
            sub.crops.append(to_square(img, size, mode))
            sub.sources.append(None)
            return
        dets = [d for d in self.detector.detect(img) if d.label in self.preset.classify]
        crop_px = self.preset.crop_um / self.scale
        if dets:
            sub.crops.extend(crop_cells(img, dets, crop_px, size))
        quality: dict[str, Any] = {}
        if dets:  # kept for the field view (its detections drawn over it)
            quality["field_sha256"] = store_png(Path(self.settings.storage), img)
        gate = sub.model.gate if sub.model is not None else None
        if gate is not None and dets:  # the field as a whole: a blurred field's cells are all not evaluable
            score = gate.score_field(img, crop_px)
            quality |= {"field_quality": round(score, 4), "field_evaluable": bool(gate.evaluable(score))}
        for i, d in enumerate(dets):
            sub.names.append(f"{name}#{i + 1}")
            sub.sources.append(
                {"field": name, "box": [int(v) for v in d.box], "detector": self.preset.detector, **quality}
            )


async def read_submission(
    request: Request, settings: ServiceSettings, model_for: Callable[[str], ModelEntry]
) -> Submission:
    """Parse and process a ``multipart/form-data`` submission as it streams in; ``model_for(task)`` is the task's
    active model (an HTTPException when none serves it)."""
    ctype, params = parse_options_header(request.headers.get("content-type"))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise HTTPException(415, "a submission is multipart/form-data: the field name, then the files")
    sub = Submission()
    reader = _Reader(settings, model_for, sub)
    done: list[tuple[str, str | None, bytes]] = []  # finished parts: (field name, file name, bytes)
    part: dict[str, Any] = {}
    ended = [False]

    def on_part_begin() -> None:
        part.clear()
        part.update(headers={}, data=bytearray(), field=b"", value=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def on_header_end() -> None:
        part["headers"][part["field"].lower()] = part["value"]
        part["field"], part["value"] = b"", b""

    def on_headers_finished() -> None:
        _, opts = parse_options_header(part["headers"].get(b"content-disposition"))
        part["name"] = opts.get(b"name", b"").decode("utf-8", "replace")
        part["filename"] = opts[b"filename"].decode("utf-8", "replace") if b"filename" in opts else None
        part["limit"] = settings.max_upload_bytes if part["filename"] is not None else MAX_FIELD_BYTES

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if len(part["data"]) + (end - start) > part["limit"]:
            shown = part["filename"] or part["name"]
            raise HTTPException(413, f"{shown}: larger than the {part['limit'] // 1024} KiB limit per file")
        part["data"] += data[start:end]

    def on_part_end() -> None:
        done.append((part["name"], part["filename"], bytes(part["data"])))

    def on_end() -> None:
        ended[0] = True

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_end": on_end,
    }
    parser = MultipartParser(params[b"boundary"], callbacks)
    files_started = False
    async for chunk in request.stream():
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise HTTPException(400, f"malformed multipart body: {exc}") from None
        while done:
            name, filename, data = done.pop(0)
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
    if not ended[0]:
        raise HTTPException(
            400, "the multipart body ended before its closing boundary (an upload cut short?)"
        )
    return sub
