"""Pages that draw with no network: the `dvc plots show` page and the service's /docs.

Both pages used to load their JavaScript from a CDN, so offline they were
blank. Now the plots page inlines vega, vega-lite and vega-embed (the HTML
template that .dvc/config names) and /docs loads Swagger UI from the service.
Headless Chromium renders each page with every host but loopback unreachable,
and the test counts what was drawn. Under CI=true a missing Chromium fails the
test: .ci/run installs it, and a skip would hide that it did not.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from dvc.repo import Repo
from dvc_render.base import Renderer
from dvc_render.html import PAGE_HTML
from dvc_render.vega import VegaRenderer
from ruamel.yaml import YAML

from src.pipeline import config
from src.pipeline.evaluate import CURVE_POINTS, PLOTS, curves
from src.serving import serve
from tests.conftest import run, running_service
from tests.template.frames import ADAPTER
from tests.template.test_predict import tiny_deployed

ROOT = config.ROOT
VENDORED = ROOT / "vendor" / "vendored.json"
PLOTS_PAGE = ROOT / "vendor" / "plots-page.html"
# The page's 3 inlined scripts are about 0.8 MB; the rest is plot data.
MAX_PAGE_BYTES = 4 * 1024 * 1024
RENDER_TIMEOUT_S = 120
INLINE_SCRIPT = re.compile(rb'<script data-vendored="(\S+) (\S+)">(.*?)</script>', re.S)


# --- the vendored files --------------------------------------------------------


def vendored_files() -> list[tuple[str, str, dict]]:
    return [
        (package["package"], package["integrity"], file)
        for package in json.loads(VENDORED.read_text(encoding="utf-8"))["packages"]
        for file in package["files"]
    ]


def test_vendored_files_are_the_registry_files_the_manifest_names():
    inline = {
        (spec.decode(), path.decode()): hashlib.sha256(code).hexdigest()
        for spec, path, code in INLINE_SCRIPT.findall(PLOTS_PAGE.read_bytes())
    }
    files = vendored_files()
    assert files and len(inline) == 3
    for package, integrity, file in files:
        assert integrity.startswith("sha512-"), package
        if file["to"] == PLOTS_PAGE.relative_to(ROOT).as_posix():
            assert inline.pop((package, file["path"])) == file["sha256"], (package, file["path"])
        else:
            data = (ROOT / file["to"]).read_bytes()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (file["bytes"], file["sha256"]), file["to"]
    assert inline == {}, f"inline scripts that vendored.json does not list: {sorted(inline)}"


def test_plots_page_inlines_the_scripts_dvc_render_would_load_from_a_cdn():
    cdn = re.findall(r"/npm/([^\"/]+@[^\"/]+)\"", VegaRenderer.SCRIPTS)
    page = PLOTS_PAGE.read_bytes()
    assert cdn and [spec.decode() for spec, _, _ in INLINE_SCRIPT.findall(page)] == cdn
    text = page.decode("utf-8")
    # DVC fills {plot_divs}; without a {scripts} placeholder it adds no CDN tags.
    assert "{plot_divs}" in text and "{scripts}" not in text
    assert not re.search(r"<script[^>]*\ssrc=", text)
    template = Repo(str(ROOT)).config["plots"]["html_template"]
    assert (ROOT / ".dvc" / template).resolve() == PLOTS_PAGE.resolve()


def test_curves_are_thinned_deterministically():
    generator = np.random.default_rng(0)
    truth = generator.integers(0, 2, 50_000)
    score = np.clip(truth * 0.3 + generator.random(50_000) * 0.7, 0, 1)  # ~50,000 distinct scores
    first, second = curves(truth, score), curves(truth, score)
    for name, frame in first.items():
        assert len(frame) <= CURVE_POINTS, name
        assert frame.equals(second[name]), name
        assert (frame.round(6) == frame).all().all(), name
    # The ends of each curve survive the thinning.
    assert first["roc"][["fpr", "tpr"]].iloc[[0, -1]].to_numpy().tolist() == [[0.0, 0.0], [1.0, 1.0]]
    assert first["precision_recall"][["recall", "precision"]].iloc[-1].tolist() == [0.0, 1.0]  # recall 0, precision 1
    assert first["roc"]["curve"].nunique() == 1 and first["precision_recall"]["baseline"].nunique() == 1


# --- Chromium, offline ---------------------------------------------------------


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def rendered_dom(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, with every host but loopback unreachable."""
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            # No name resolves (but the loopback address), and every other request
            # goes to a proxy on a closed port: nothing leaves the machine.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--proxy-server=http://127.0.0.1:9",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=RENDER_TIMEOUT_S,
    )
    assert result.returncode == 0 and result.stdout, result.stderr[-2000:]
    return result.stdout


class DrawnCharts(HTMLParser):
    """Per plot div: the elements vega drew its marks into (canvas or svg of class "marks")."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__()
        self.marks = {name: 0 for name in ids}
        self.current, self.depth = None, 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "div":
            if self.current is not None:
                self.depth += 1
            elif attributes.get("id") in self.marks:
                self.current, self.depth = attributes["id"], 1
        elif (
            self.current is not None and tag in ("canvas", "svg") and "marks" in (attributes.get("class") or "").split()
        ):
            self.marks[self.current] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self.current is not None:
            self.depth -= 1
            if self.depth == 0:
                self.current = None


def drawn(dom: str, ids: list[str]) -> dict[str, int]:
    parser = DrawnCharts(ids)
    parser.feed(dom)
    return parser.marks


@pytest.mark.long
def test_plots_page_draws_every_plot_offline(reproduced, tmp_path):
    chromium()
    # The adapter's task's plots: evaluate writes those files (evaluate.PLOTS); the other task's
    # plots have none, and DVC leaves them empty (tests/template/test_plots.py checks both).
    plots = [
        plot
        for plot in YAML(typ="safe").load((reproduced / "dvc.yaml").read_text(encoding="utf-8"))["plots"]
        if all(Path(path).stem in PLOTS[ADAPTER.task] for spec in plot.values() for path in spec["y"])
    ]
    assert plots, "dvc.yaml declares no plot of the adapter's task"
    ids = [Renderer.remove_special_chars(next(iter(plot))) for plot in plots]
    for plot in plots:
        for path in next(iter(plot.values()))["y"]:
            rows = json.loads((reproduced / path).read_text(encoding="utf-8"))
            assert isinstance(rows, list) and len(rows) <= CURVE_POINTS, path

    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], cwd=reproduced)
    page = tmp_path / "plots" / "index.html"
    assert page.stat().st_size <= MAX_PAGE_BYTES
    assert not re.search(r"<script[^>]*\ssrc=", page.read_text(encoding="utf-8")), "the page loads a script"
    charts = drawn(rendered_dom(page.as_uri(), tmp_path / "profile"), ids)
    assert charts == {name: 1 for name in ids}

    # The control: DVC's stock page, which loads the same scripts from a CDN,
    # draws nothing under the same flags. So the network really was cut.
    stock = tmp_path / "stock.html"
    stock.write_text(PAGE_HTML, encoding="utf-8")
    run(["dvc", "plots", "show", "--html-template", str(stock), "-o", str(tmp_path / "stock")], cwd=reproduced)
    stock_dom = rendered_dom((tmp_path / "stock" / "index.html").as_uri(), tmp_path / "profile")
    assert drawn(stock_dom, ids) == {name: 0 for name in ids}


@pytest.fixture
def service(tmp_path):
    """A tiny model's service on a free loopback port; stopped afterwards."""
    deployed, _ = tiny_deployed(tmp_path / "model", 2)
    with running_service(serve.create_app(deployed)) as url:
        yield url


@pytest.mark.long
def test_docs_page_lists_the_operations_offline(service, tmp_path):
    chromium()
    dom = rendered_dom(f"{service}/docs", tmp_path / "profile")
    # Swagger UI draws one block per operation: its method, then its path.
    operations = set(re.findall(r'<div class="opblock opblock-(\w+)[^>]*>.*?data-path="([^"]+)"', dom, re.S))
    # /predict/raw is there when the adapter declares INPUTS (its raw rows' derivation).
    raw = {("post", "/predict/raw")} if ADAPTER.inputs is not None else set()
    assert operations == {("post", "/predict"), ("get", "/info"), ("get", "/health"), *raw}
