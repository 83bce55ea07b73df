"""The review page in headless Chromium (Debian's package, driven by Playwright): upload a sample, see the cells by
class, reclassify two with the keyboard, sign as a reviewer, and find it all in the report and the audit trail;
the four-eyes refusal on the page; the admin panel (add a user, rotate a token, deactivate an account). The page
runs under the service's Content-Security-Policy (no inline script), and no page error may occur.

Screenshots go to ``test-artifacts/browser/`` (or ``$LABLENS_TEST_ARTIFACTS``)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from lablens.service.app import ServiceSettings, create_app
from lablens.service.auth import create_user
from lablens.service.db import sessions

from conftest import tiny_bundle, tiny_mil_bundle

USERS = (("tina", "technician"), ("rita", "reviewer"), ("adam", "admin"))
ARTIFACTS = Path(
    os.environ.get("LABLENS_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)


def _chromium() -> str:
    for name in (os.environ.get("LABLENS_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    pytest.skip(
        "no Chromium found: install Debian's chromium (apt-get install chromium) or set LABLENS_CHROMIUM"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path: Path, bundle: Path | None, images: list, registry: Path | None = None) -> Iterator[dict]:  # type: ignore[type-arg]
    """``bundle`` (or a ``registry``) served by uvicorn in a thread, three users, and ``images`` written as PNG
    files to upload."""
    app = create_app(
        ServiceSettings(
            bundle=str(bundle) if bundle else None,
            registry=str(registry) if registry else None,
            db_url=f"sqlite:///{tmp_path / 'l.db'}",
            storage=str(tmp_path / "img"),
            min_confidence=0.0,
        )
    )
    with sessions(app.state.engine)() as s:
        key = app.state.service.audit_key
        tokens = {name: create_user(s, key, name, role) for name, role in USERS}
        s.commit()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(url + "/api/health").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    files = []
    for i, im in enumerate(images):
        path = tmp_path / f"cell_{i}.png"
        Image.fromarray(im).save(path)
        files.append(str(path))
    yield {"url": url, "tokens": tokens, "files": files}
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[dict]:  # type: ignore[type-arg]
    bundle, images = tiny_bundle(tmp_path / "b")
    yield from _serve(tmp_path, bundle, list(images[:6]))


@pytest.fixture
def live_mil(tmp_path: Path) -> Iterator[dict]:  # type: ignore[type-arg]
    """A multiple-instance (sample-level) ANA bundle, and eight phantom HEp-2 cells to upload as one sample."""
    import pandas as pd

    from lablens.data.io import read_image
    from lablens.phantoms import get_task
    from lablens.phantoms.write import write_phantoms

    bundle, _ = tiny_mil_bundle(tmp_path / "mil")
    write_phantoms(get_task("ana-hep2"), tmp_path / "cells", n=8, seed=7, size=64)
    cells = pd.read_csv(tmp_path / "cells" / "manifest.csv", dtype=str)
    images = [read_image(tmp_path / "cells" / p).pixels for p in cells["path"]]
    yield from _serve(tmp_path, bundle, images)


def test_upload_reclassify_two_sign_and_see_report_and_audit(live: dict) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (test extras)")
    shots = ARTIFACTS / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(live["url"] + "/")
        page.fill("#token", live["tokens"]["tina"])
        page.click("#signin")
        sync_api.expect(page.locator("#who")).to_contain_text("tina (technician)")
        _upload(page, "S-browser", live["files"])
        page.screenshot(path=str(shots / "1-uploaded.png"), full_page=True)

        auth = {"Authorization": f"Bearer {live['tokens']['tina']}"}
        sample = httpx.get(live["url"] + "/api/samples", headers=auth).json()[0]
        doc = httpx.get(f"{live['url']}/api/samples/{sample['id']}", headers=auth).json()
        classes = httpx.get(live["url"] + "/api/health").json()["classes"]
        groups = {g.get_attribute("data-class") for g in page.locator("#groups .group").all()}
        assert groups == {c["final"] for c in doc["cells"]}  # cells are shown grouped by class
        changed = {}
        for cell in doc["cells"][:2]:
            new = next(k for k in classes if k != cell["predicted"])
            page.click(f"[data-testid=cell-{cell['id']}]")
            page.keyboard.press(str(classes.index(new) + 1))
            sync_api.expect(page.locator("#message")).to_contain_text(
                f"cell {cell['id']}: reclassified as {new}"
            )
            changed[cell["id"]] = new
        page.screenshot(path=str(shots / "2-reclassified.png"), full_page=True)

        page.fill("#token", live["tokens"]["rita"])
        page.click("#signin")
        sync_api.expect(page.locator("#who")).to_contain_text("rita (reviewer)")
        page.click("#sign")
        sync_api.expect(page.locator("[data-testid=report-status]")).to_contain_text("signed by rita")
        audit = page.locator("#audit")
        sync_api.expect(audit.locator("tr")).to_have_count(4)  # submit, 2 reclassify, sign
        text = audit.inner_text()
        assert text.count("reclassify") == 2 and "sign" in text and "tina" in text and "rita" in text
        for new in changed.values():
            assert new in text
        sync_api.expect(page.locator("[data-testid=agreement]")).to_contain_text("2 cells, agreement 0.0 %")
        page.check("#gradcam")
        sync_api.expect(page.locator("#groups img").first).to_have_attribute(
            "src", __import__("re").compile("^blob:")
        )
        page.screenshot(path=str(shots / "3-signed-report-audit.png"), full_page=True)
        browser.close()
    final = httpx.get(f"{live['url']}/api/samples/{sample['id']}", headers=auth).json()
    assert final["status"] == "signed"
    assert {c["id"]: c["label"] for c in final["cells"] if c["status"] == "reclassified"} == changed


def _page(pw, errors: list[str]):  # type: ignore[no-untyped-def]
    browser = pw.chromium.launch(executable_path=_chromium(), headless=True, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return browser, page


def _sign_in(page, live: dict, name: str) -> None:  # type: ignore[no-untyped-def]
    sync_api = pytest.importorskip("playwright.sync_api")
    page.fill("#token", live["tokens"][name])
    page.click("#signin")
    sync_api.expect(page.locator("#who")).to_contain_text(name)


def _upload(page, name: str, files: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Submit ``files`` as sample ``name`` on the page and wait until all its cells are shown."""
    sync_api = pytest.importorskip("playwright.sync_api")
    page.fill("#sample-name", name)
    page.set_input_files("#files", files)
    page.click("#upload button[type=submit]")
    sync_api.expect(page.locator("#groups .cell")).to_have_count(len(files))


WIDE_ELEMENTS = """() => [...document.querySelectorAll("main > div, section, .table-wrap")]
  .filter((e) => e.scrollWidth > e.clientWidth && !e.classList.contains("table-wrap"))
  .map((e) => (e.id || e.tagName) + ": " + e.clientWidth + " px shown of " + e.scrollWidth)"""  # what widens the page


def test_before_sign_in_the_page_says_how_and_no_table_overflows_the_page(live: dict) -> None:
    """Empty panels before sign-in said nothing; wide tables pushed the page sideways at 1400 px."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (test extras)")
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser, page = _page(pw, errors)
        page.goto(live["url"] + "/")
        sync_api.expect(page.locator("#welcome")).to_contain_text("Sign in with your token")
        sync_api.expect(page.locator("#app")).to_be_hidden()
        _sign_in(page, live, "adam")
        sync_api.expect(page.locator("#welcome")).to_be_hidden()
        long_name = "S-" + "0412" * 40  # one unbreakable word: its row is wider than any card
        _upload(page, long_name, live["files"][:2])
        sync_api.expect(page.locator(f"[data-testid=sample-{long_name}]")).to_have_count(1)
        for width in (1280, 1920):
            page.set_viewport_size({"width": width, "height": 1000})
            page.wait_for_timeout(100)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            wide = page.evaluate(WIDE_ELEMENTS)
            assert overflow <= 0, f"the page scrolls sideways by {overflow} px at {width} px: {wide}"
            page.screenshot(path=str(ARTIFACTS / "browser" / f"6-layout-{width}.png"), full_page=True)
        wrap = page.locator("#samples").locator("xpath=ancestor::div[@class='table-wrap']")
        assert wrap.evaluate("e => e.scrollWidth > e.clientWidth")  # the wide worklist scrolls in its card
        browser.close()
    assert errors == []


def test_the_page_refuses_a_sign_off_by_the_submitter(live: dict) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (test extras)")
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser, page = _page(pw, errors)
        page.goto(live["url"] + "/")
        _sign_in(page, live, "rita")
        _upload(page, "S-own", live["files"][:3])
        page.click("#sign")
        sync_api.expect(page.locator("#message")).to_contain_text("403: rita submitted sample")
        sync_api.expect(page.locator("[data-testid=report-status]")).to_contain_text("open")
        page.screenshot(path=str(ARTIFACTS / "browser" / "4-four-eyes-refusal.png"), full_page=True)
        browser.close()
    assert [e for e in errors if "403" not in e] == []  # the refusal is the only error the page saw


def test_the_admin_panel_adds_a_user_rotates_a_token_and_deactivates_an_account(live: dict) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (test extras)")
    errors: list[str] = []
    (ARTIFACTS / "browser").mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser, page = _page(pw, errors)
        page.goto(live["url"] + "/")
        _sign_in(page, live, "tina")
        sync_api.expect(page.locator("#admin")).to_be_hidden()  # technicians see no user list
        _sign_in(page, live, "adam")
        sync_api.expect(page.locator("#users tr")).to_have_count(3)
        page.fill("#new-user-name", "vera")
        page.select_option("#new-user-role", "reviewer")
        page.click("#new-user button[type=submit]")
        sync_api.expect(page.locator("#users tr")).to_have_count(4)
        token = page.locator("[data-testid=new-token]").inner_text().rsplit(" ", 1)[-1]
        me = httpx.get(live["url"] + "/api/whoami", headers={"Authorization": f"Bearer {token}"}).json()
        assert me == {"name": "vera", "role": "reviewer"}
        page.locator("[data-testid=user-tina] button[data-act=rotate-token]").click()
        sync_api.expect(page.locator("[data-testid=new-token]")).to_contain_text("API token of tina")
        old = {"Authorization": f"Bearer {live['tokens']['tina']}"}
        assert httpx.get(live["url"] + "/api/whoami", headers=old).status_code == 401
        page.locator("[data-testid=user-rita] button[data-act=deactivate]").click()
        sync_api.expect(page.locator("[data-testid=user-rita]")).to_contain_text("deactivated")
        rita = {"Authorization": f"Bearer {live['tokens']['rita']}"}
        assert httpx.get(live["url"] + "/api/whoami", headers=rita).status_code == 401
        page.screenshot(path=str(ARTIFACTS / "browser" / "5-admin-panel.png"), full_page=True)
        browser.close()
    assert errors == []


def test_a_sample_called_by_a_multiple_instance_bundle_shows_its_call_and_the_cells_that_drove_it(
    live_mil: dict,
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (test extras)")
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser, page = _page(pw, errors)
        page.goto(live_mil["url"] + "/")
        _sign_in(page, live_mil, "tina")
        _upload(page, "serum-7", live_mil["files"])
        sync_api.expect(page.locator("[data-testid=sample-call]")).to_contain_text("Sample call:")
        auth = {"Authorization": f"Bearer {live_mil['tokens']['tina']}"}
        sample = httpx.get(live_mil["url"] + "/api/samples", headers=auth).json()[0]
        doc = httpx.get(f"{live_mil['url']}/api/samples/{sample['id']}", headers=auth).json()
        sync_api.expect(page.locator("[data-testid=sample-call] b")).to_have_text(doc["call"]["predicted"])
        for cell in doc["cells"]:
            shown = page.locator(f"[data-testid=attention-{cell['id']}]")
            sync_api.expect(shown).to_contain_text(f"attention {100 * cell['attention']:.1f} %")
        for group in page.locator("#groups .group").all():  # within a class, the drivers of the call first
            ids = [int(el.get_attribute("data-id")) for el in group.locator(".cell").all()]
            weights = [next(c["attention"] for c in doc["cells"] if c["id"] == i) for i in ids]
            assert weights == sorted(weights, reverse=True)
        (ARTIFACTS / "browser").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser" / "6-mil-sample-call.png"), full_page=True)
        browser.close()
    assert not errors, errors


@pytest.fixture
def live_registry(tmp_path: Path) -> Iterator[dict]:  # type: ignore[type-arg]
    """A registry with task ``blood`` (v1 active, v2 a candidate with its promotion report), the task's quality
    gate, and four phantom smear fields (two defocused) to submit."""
    import cv2
    import pandas as pd

    from lablens.config import RunConfig
    from lablens.phantoms import write_phantoms
    from lablens.workflows.degrade import degrade
    from lablens.workflows.promote import promote
    from lablens.workflows.train import train

    from conftest import write_shape_folder

    reg = tmp_path / "registry"
    tiny_bundle(reg / "blood" / "v1", "handcrafted")
    tiny_bundle(reg / "blood" / "v2", "handcrafted")
    shapes = write_shape_folder(tmp_path / "shapes", per_class=12, size=48)
    degrade(shapes, tmp_path / "deg", levels="0-4", kinds="defocus,gaussian", progress=False)
    cfg = RunConfig()
    cfg.model.name, cfg.model.image_size, cfg.data.label_column = "blur_level", 48, "blur_level"
    cfg.train.threads, cfg.eval.bootstrap = 1, 0
    quality = train(tmp_path / "deg", tmp_path / "qrun", cfg, progress=False).bundles[0]
    shutil.copytree(quality, reg / "blood" / "quality")
    locked = write_shape_folder(tmp_path / "locked", per_class=8, size=40, seed=5)
    promote(reg / "blood" / "v2", reg / "blood" / "v1", [locked], tmp_path / "p", n_boot=50, progress=False)
    write_phantoms("blood-cells", tmp_path / "fields", n=5, seed=3, fields=True, size=320)
    man = pd.read_csv(tmp_path / "fields" / "manifest.csv")
    images = []
    for i, p in enumerate(man["path"]):
        img = np.asarray(Image.open(tmp_path / "fields" / p).convert("RGB"))
        images.append(cv2.GaussianBlur(img, (0, 0), 8) if i >= 2 else img)
    scale = float(man["field_um"].mean() / 320)
    for served in _serve(tmp_path, None, images, registry=reg):
        yield {**served, "report": tmp_path / "p" / "promotion.json", "um_per_px": scale}


def test_worklist_field_view_held_back_queue_monitoring_and_model_admin(live_registry: dict) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (test extras)")
    live, errors = live_registry, []
    shots = ARTIFACTS / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser, page = _page(pw, errors)
        page.goto(live["url"] + "/")
        _sign_in(page, live, "tina")
        sync_api.expect(page.locator("#models")).to_be_hidden()
        # a field submission: the field view draws every detection; a click on a box selects its cell
        page.fill("#sample-name", "smear-1")
        page.select_option("#kind", "fields")
        page.fill("#um-per-px", str(live["um_per_px"]))
        page.set_input_files("#files", live["files"])
        page.click("#upload button[type=submit]")
        sync_api.expect(page.locator("#message")).to_contain_text("sample smear-1")
        sync_api.expect(page.locator("[data-testid=field-0] img")).to_have_attribute(
            "src", __import__("re").compile("^blob:")
        )
        box = page.locator("#fields .box").first
        cell_id = box.get_attribute("data-cell")
        box.click()
        sync_api.expect(page.locator(f"[data-testid=cell-{cell_id}]")).to_have_class(
            __import__("re").compile("selected")
        )
        sync_api.expect(
            page.locator("#fields figcaption").filter(has_text="not evaluable")
        ).not_to_have_count(0)
        page.screenshot(path=str(shots / "7-field-view.png"), full_page=True)
        # the not-evaluable queue lists the defocused fields' cells; a click opens the sample at that cell
        auth = {"Authorization": f"Bearer {live['tokens']['tina']}"}
        held = httpx.get(live["url"] + "/api/queue?kind=not_evaluable", headers=auth).json()
        assert held and all(c["queue"] == "not_evaluable" for c in held)
        sync_api.expect(page.locator("#queue tr")).to_have_count(len(held))
        page.locator(f"[data-testid=queued-{held[0]['id']}]").click()
        sync_api.expect(page.locator(f"[data-testid=cell-{held[0]['id']}]")).to_have_class(
            __import__("re").compile("selected")
        )
        sync_api.expect(page.locator("#groups .group[data-class=not_evaluable] .cell")).to_have_count(
            len(held)
        )
        # worklist filters
        page.select_option("#f-status", "signed")
        sync_api.expect(page.locator("#samples tr")).to_have_count(0)
        page.select_option("#f-status", "open")
        sync_api.expect(page.locator("[data-testid=sample-smear-1]")).to_contain_text("blood")
        # a review shows up in monitoring (after a reload of the page)
        page.keyboard.press("Enter")
        sync_api.expect(page.locator("#message")).to_contain_text("confirmed")
        page.reload()
        _sign_in(page, live, "tina")
        sync_api.expect(page.locator("#monitor tr").first).to_contain_text("blood")
        # model admin: v2 is promoted with its report; v1 back with a reason
        _sign_in(page, live, "adam")
        sync_api.expect(page.locator("#model-rows tr")).to_have_count(2)
        v2 = page.locator("[data-testid=model-blood-v2]")
        v2.locator("button[data-act=activate]").click()
        sync_api.expect(page.locator("#message")).to_contain_text("send the `lablens promote` report")
        v2.locator("input.report").set_input_files(str(live["report"]))
        v2.locator("button[data-act=activate]").click()
        sync_api.expect(page.locator("#message")).to_contain_text("blood v2: promote done")
        sync_api.expect(page.locator("[data-testid=model-blood-v2]")).to_contain_text("active")
        sync_api.expect(page.locator("[data-testid=model-blood-v2]")).to_contain_text("promote: accuracy")
        v1 = page.locator("[data-testid=model-blood-v1]")
        v1.locator("input.reason").fill("drift on site B")
        v1.locator("button[data-act=activate]").click()
        sync_api.expect(page.locator("#message")).to_contain_text("blood v1: rollback done")
        page.screenshot(path=str(shots / "8-model-admin-monitoring.png"), full_page=True)
        browser.close()
    assert [e for e in errors if "409" not in e] == []  # the refused promotion is the only error seen
