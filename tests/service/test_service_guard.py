"""Hostile or careless requests: no body is read before the token is checked, sizes and pixel budgets are
enforced with a 413 naming the file, parameters have physical ranges, and no input gives a 500."""

from __future__ import annotations

import re

import numpy as np
import pytest
from python_multipart.multipart import MultipartParser
from service_fixtures import png, submit


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the body bytes the multipart parser is given."""
    seen: list[int] = []
    original = MultipartParser.write

    def write(self, data):  # type: ignore[no-untyped-def]
        seen.append(len(data))
        return original(self, data)

    monkeypatch.setattr(MultipartParser, "write", write)
    return seen


def test_bodies_are_not_read_before_the_token_is_checked(service: dict, parsed: list[int]) -> None:
    c = service["client"]
    files = [("files", ("a.png", b"x" * 500_000, "image/png"))]
    for headers in ({}, {"Authorization": "Bearer forged"}, {"Authorization": "Basic abc"}):
        r = c.post("/api/samples", data={"name": "anon"}, files=files, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert parsed == []  # not one byte reached the parser
    assert c.get("/api/health").status_code == 200  # the one public endpoint


def test_a_body_over_the_total_limit_is_refused_before_and_while_it_is_read(
    service: dict, parsed: list[int]
) -> None:
    c, h = service["client"], service["auth"]["technician"]
    service["app"].state.settings.max_request_bytes = 100_000
    files = [("files", (f"c{i}.png", b"x" * 15_000, "image/png")) for i in range(10)]
    r = c.post("/api/samples", data={"name": "big"}, files=files, headers=h)
    assert r.status_code == 413 and "limit is 100,000 bytes" in r.json()["detail"] and parsed == []

    def chunks():  # no Content-Length: the size is counted as it streams in
        yield b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nS\r\n'
        for _ in range(20):
            yield b"x" * 10_000

    r = c.post(
        "/api/samples", content=chunks(), headers={**h, "Content-Type": "multipart/form-data; boundary=b"}
    )
    assert r.status_code == 413 and "over the limit of 100,000 bytes" in r.json()["detail"]


def test_the_submission_pixel_budget_names_the_file_that_crosses_it(service: dict) -> None:
    c, h = service["client"], service["auth"]["technician"]
    service["app"].state.settings.max_request_pixels = 3 * 32 * 32
    files = [("files", (f"cell_{i}.png", png(im), "image/png")) for i, im in enumerate(service["images"][:5])]
    r = c.post("/api/samples", data={"name": "many"}, files=files, headers=h)
    assert r.status_code == 413 and r.json()["detail"].startswith("cell_3.png: with its 1,024 pixels")
    assert c.get("/api/samples", headers=h).json() == []  # nothing was stored


@pytest.mark.parametrize("value", ["1e-9", "1e-320", "inf", "-inf", "nan", "-1", "0", "11", "abc"])
def test_um_per_px_outside_the_physical_range_is_422(service: dict, value: str) -> None:
    files = [("files", ("f.png", png(service["images"][0]), "image/png"))]
    data = {"name": "f", "kind": "fields", "task": "blood", "um_per_px": value}
    r = service["client"].post("/api/samples", data=data, files=files, headers=service["auth"]["technician"])
    assert r.status_code == 422 and "um_per_px" in r.json()["detail"]


def test_malformed_and_truncated_multipart_bodies_are_400(service: dict) -> None:
    c, h = service["client"], service["auth"]["technician"]
    form = {**h, "Content-Type": "multipart/form-data; boundary=b"}
    r = c.post("/api/samples", content=b"--b\r\n" + b"X-Header: 1\r\n" * 20 + b"\r\n", headers=form)
    assert r.status_code == 400 and "malformed multipart body" in r.json()["detail"]
    cut = b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nS\r\n--b\r\nContent-Disposition: form-data'
    r = c.post("/api/samples", content=cut, headers=form)
    assert r.status_code == 400 and "ended before its closing boundary" in r.json()["detail"]
    r = c.post(
        "/api/samples", content=b"name=x", headers={**h, "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 415


def test_form_fields_that_decide_how_files_are_read_come_first(service: dict) -> None:
    good = png(service["images"][0])
    body = [("files", ("a.png", good, "image/png")), ("kind", (None, b"fields"))]
    r = service["client"].post(
        "/api/samples", data={"name": "x"}, files=body, headers=service["auth"]["technician"]
    )
    assert r.status_code == 422 and "'kind' must come before the files" in r.json()["detail"]


BAD_IDS = ["0", "-1", str(2**31), str(2**63), str(2**70), "1e3", "abc", "1.5", "%20"]


def test_no_route_answers_500_to_malformed_input(service: dict) -> None:
    c, auth = service["client"], service["auth"]
    doc = submit(service, 2)
    paths = c.get("/openapi.json").json()["paths"]
    routes = [
        (path, method.upper()) for path, ops in paths.items() for method in ops if path.startswith("/api")
    ]
    assert len(routes) >= 18
    for route, method in routes:
        variants = [re.sub(r"\{\w+\}", bad, route) for bad in BAD_IDS] if "{" in route else [route]
        variants.append(re.sub(r"\{\w+\}", str(doc["id"]), route))
        for path in variants:
            for kw in (
                {},
                {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
                {"json": {"action": 7, "label": [1], "name": None}},
                {"data": {"name": "x" * 500, "kind": "?", "um_per_px": "nan"}},
                {"files": [("files", ("../x.png", b"\x00\xff", "image/png"))]},
                {"params": {"entity_id": str(2**63), "head_id": "-5", "head_hash": "zz"}},
            ):
                r = c.request(method, path, headers={**auth["admin"], **kw.pop("headers", {})}, **kw)
                assert r.status_code < 500, (method, path, kw, r.status_code, r.text[:200])


def test_large_ids_are_422_not_500(service: dict) -> None:
    c, h = service["client"], service["auth"]["reviewer"]
    assert c.get(f"/api/samples/{2**63}", headers=h).status_code == 422
    assert c.get(f"/api/cells/{2**64}/image", headers=h).status_code == 422
    assert c.get("/api/audit", params={"entity_id": 2**63}, headers=h).status_code == 422
    assert c.get(f"/api/samples/{2**31 - 1}", headers=h).status_code == 404


def test_security_headers_and_a_page_without_inline_script(service: dict) -> None:
    c = service["client"]
    for path in ("/", "/api/health", "/static/app.js"):
        r = c.get(path)
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    html = c.get("/").text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>\s*\S", html)  # every script is a file
    assert not re.search(r"\son[a-z]+=", html) and "<style" not in html and "style=" not in html
    assert np.all([c.get(p).status_code == 200 for p in ("/static/app.js", "/static/app.css")])
