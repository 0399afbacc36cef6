"""The evaluate stage's plots, as a data scientist reads them.

The plot data comes from evaluate's own functions; the drawing from dvc.yaml's
`plots:` and the templates in .dvc/plots/. The rendering test writes the plot
files of a made-up model for two and for three classes into a bare DVC project
that holds only dvc.yaml's plots, runs `dvc plots show`, and has headless
Chromium draw the page as SVG, so the text on each chart (legends, counts,
tick labels) can be read back and checked.
"""

from __future__ import annotations

import itertools
import re
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dvc_render.base import Renderer
from dvclive import Live
from ruamel.yaml import YAML
from sklearn import metrics

from src.pipeline import config
from src.pipeline.adapter import CLASSIFICATION, REGRESSION
from src.pipeline.evaluate import (
    CALIBRATION_BINS,
    HISTOGRAM_BINS,
    PLOTS,
    curve_inputs,
    curves,
    log_plots,
    log_regression_plots,
    score_histogram,
    scores,
)
from tests.conftest import run
from tests.template.test_offline_pages import PLOTS_PAGE, chromium, rendered_dom

ROOT = config.ROOT


def made_up(classes: list, rows: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Actual classes and predicted probabilities that lean towards them (rows x classes)."""
    generator = np.random.default_rng(seed)
    y = np.asarray(classes)[generator.integers(0, len(classes), rows)]
    logits = generator.normal(size=(rows, len(classes)))
    logits[np.arange(rows), [classes.index(value) for value in y]] += 1.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probabilities


# --- the plot data -------------------------------------------------------------


def test_binary_curves_carry_the_metrics_and_the_prevalence():
    y, probabilities = made_up([0, 1])
    frames = curves(*curve_inputs(y, probabilities, [0, 1]))
    reported = scores(y, probabilities, [0, 1], 0.5)
    assert set(frames["roc"]["curve"]) == {f"AUC {reported['roc_auc']:.4f}"}
    assert set(frames["precision_recall"]["curve"]) == {f"AP {reported['average_precision']:.4f}"}
    assert set(frames["precision_recall"]["baseline"]) == {round(float(np.mean(y == 1)), 6)}
    calibration = frames["calibration"]
    assert len(calibration) == CALIBRATION_BINS
    assert calibration[["prob_pred", "prob_true"]].stack().between(0, 1).all()
    # Quantile bins: the bin means are those of ten equally filled bins, not of uniform ones.
    score = probabilities[:, 1]
    edges = np.quantile(score, np.linspace(0, 1, CALIBRATION_BINS + 1))
    first = score[score <= edges[1]]
    assert calibration["prob_pred"].iloc[0] == pytest.approx(first.mean(), abs=1e-6)


def test_multiclass_curves_say_they_are_micro_averaged():
    classes = ["a", "b", "c"]
    y, probabilities = made_up(classes)
    truth, score = curve_inputs(y, probabilities, classes)
    frames = curves(truth, score, averaged=True)
    assert set(frames["roc"]["curve"]) == {f"micro-average AUC {metrics.roc_auc_score(truth, score):.4f}"}
    assert set(frames["precision_recall"]["baseline"]) == {round(1 / 3, 6)}


@pytest.mark.parametrize("classes", [[0, 1], ["a", "b", "c"]])
def test_score_histogram_gives_each_class_its_own_shares(classes):
    y, probabilities = made_up(classes)
    frame = score_histogram(y, probabilities, classes)
    assert list(frame["class"].unique()) == [str(label) for label in classes]
    for index, label in enumerate(classes):
        rows = frame[frame["class"] == str(label)]
        assert len(rows) == HISTOGRAM_BINS
        assert rows["count"].sum() == (y == label).sum()
        assert rows["share"].sum() == pytest.approx(1, abs=1e-5)
        # Two classes: the positive class's probability; more: the row's own class's.
        score = probabilities[y == label, 1 if len(classes) == 2 else index]
        assert rows["count"].iloc[-1] == (score >= 1 - 1 / HISTOGRAM_BINS).sum()
    assert frame[["bin_start", "bin_end"]].iloc[[0, -1]].to_numpy().tolist() == [[0.0, 0.05], [0.95, 1.0]]


# --- the drawn page ------------------------------------------------------------


class ChartTexts(HTMLParser):
    """Per plot div: every visible SVG <text> as (text, x, y, anchor, font size, is an axis label)."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__()
        self.texts: dict[str, list[tuple]] = {name: [] for name in ids}
        self.current, self.depth, self.open = None, 0, None
        self.groups: list[bool] = []  # per open <g>: does it hold axis labels (vega's role-axis-label)?

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "g":
            self.groups.append("role-axis-label" in (attributes.get("class") or "").split())
        elif tag == "div":
            if self.current is not None:
                self.depth += 1
            elif attributes.get("id") in self.texts:
                self.current, self.depth = attributes["id"], 1
        elif tag == "text" and self.current is not None and attributes.get("opacity", "1") != "0":
            x, y = map(float, re.match(r"translate\(([-\d.e]+),([-\d.e]+)\)", attributes["transform"]).groups())
            self.open = [
                x,
                y,
                attributes.get("text-anchor", "start"),
                float(attributes["font-size"][:-2]),
                any(self.groups),
            ]

    def handle_data(self, data: str) -> None:
        if self.open is not None:
            self.texts[self.current].append((data, *self.open))
            self.open = None

    def handle_endtag(self, tag: str) -> None:
        if tag == "g" and self.groups:
            self.groups.pop()
        elif tag == "div" and self.current is not None:
            self.depth -= 1
            if self.depth == 0:
                self.current = None


def overlapping_labels(texts: list[tuple]) -> list[tuple[str, str]]:
    """Neighbouring numeric axis labels on one line that run into each other (an estimate of their widths).

    Vega's default sans-serif draws a digit 0.556 em wide and a point 0.278 em;
    two labels closer than a third of an em read as one number ("0.000.01").
    """
    lines: dict[float, list] = {}
    for text, x, y, anchor, size, axis_label in texts:
        if axis_label and re.fullmatch(r"[-\d.,e]+", text):
            width = sum(0.278 if char in ".," else 0.556 for char in text) * size
            start = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
            lines.setdefault(y, []).append((start, start + width, text, size))
    collisions = []
    for labels in lines.values():
        labels.sort()
        for (_, end, text, size), (start, _, after, _) in itertools.pairwise(labels):
            if start - end < size / 3:
                collisions.append((text, after))
    return collisions


@pytest.fixture(scope="module")
def plots_setup(tmp_path_factory) -> Path:
    """A DVC project with this repository's plots, templates and page (and no plot files), made once."""
    path = tmp_path_factory.mktemp("plots") / "project"
    path.mkdir()
    run(["dvc", "init", "--no-scm", "-q"], cwd=path)
    shutil.copytree(ROOT / ".dvc" / "plots", path / ".dvc" / "plots")
    (path / "vendor").mkdir()
    shutil.copy(PLOTS_PAGE, path / "vendor" / PLOTS_PAGE.name)
    run(["dvc", "config", "plots.html_template", f"../vendor/{PLOTS_PAGE.name}"], cwd=path)
    declared = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    YAML().dump({"plots": declared["plots"]}, path / "dvc.yaml")
    return path


def plots_project(setup: Path, path: Path, classes: list) -> tuple[Path, np.ndarray, np.ndarray]:
    """A copy of `setup` (plots_setup) at `path`, with a made-up model's plot files.

    No classes: a made-up regression's (y, predicted values).
    """
    shutil.copytree(setup, path)
    # The example's spread (0 to 0.0999): DVC's stock bar template put eleven labels,
    # 0.00 to 0.10, in its 300 pixels, and the first two ran together.
    importance = pd.DataFrame(
        {
            "feature": [f"feature_{i}" for i in range(12)],
            "importance": [0.0999, 0.056, 0.031, 0.028, 0.026, 0.019, 0.014, 0.006, 0.004, 0.002, 0.001, 0.0],
        }
    )
    if not classes:
        generator = np.random.default_rng(0)
        y = generator.normal(4000.0, 800.0, 3000)
        predicted = y + generator.normal(0.0, 300.0, 3000)
        with Live(dir=str(path / "eval"), dvcyaml=False, save_dvc_exp=False, report=None) as live:
            log_regression_plots(live, y, predicted, importance, "RMSE")
        return path, y, predicted
    y, probabilities = made_up(classes)
    labels = np.asarray(classes)[np.argmax(probabilities, axis=1)]
    with Live(dir=str(path / "eval"), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        log_plots(live, y, probabilities, labels, classes, importance, "ROC AUC")
    return path, y, probabilities


def drawn_texts(project: Path, output: Path, task: str) -> tuple[dict[str, list[str]], dict[str, list], str]:
    """`dvc plots show` of `project`, drawn as SVG in Chromium: per plot id, its texts (and their positions).

    Every declared plot gets a chart; those of the other task have no file, and
    DVC (exiting 0) leaves them empty. Those of `task` must each hold text.
    """
    plots = YAML(typ="safe").load((project / "dvc.yaml").read_text(encoding="utf-8"))["plots"]
    ids = [Renderer.remove_special_chars(next(iter(plot))) for plot in plots]
    shown = run(["dvc", "plots", "show", "-o", str(output / "plots")], cwd=project)
    page = (output / "plots" / "index.html").read_text(encoding="utf-8")
    # The same page drawn as SVG rather than canvas, so its text is in the DOM.
    page, embeds = re.subn(r"vegaEmbed\('(#[^']+)', spec\);", r"vegaEmbed('\1', spec, {renderer: 'svg'});", page)
    assert embeds == len(ids)
    (output / "svg.html").write_text(page, encoding="utf-8")
    dom = rendered_dom((output / "svg.html").as_uri(), output / "profile")
    parser = ChartTexts(ids)
    parser.feed(dom)
    own = [
        name
        for name, plot in zip(ids, plots, strict=True)
        if all(Path(file).stem in PLOTS[task] for spec in plot.values() for file in spec["y"])
    ]
    texts = {name: [text for text, *_ in parser.texts[name]] for name in own}
    assert all(texts.values()), {name: len(found) for name, found in texts.items()}
    assert set(ids) - set(own) == {name for name, found in parser.texts.items() if not found}
    if set(ids) - set(own):
        assert "failed to load some plots" in shown.stdout + shown.stderr
    return texts, {name: parser.texts[name] for name in own}, dom


@pytest.mark.slow  # seconds each: dvc and Chromium subprocesses
@pytest.mark.parametrize("classes", [[0, 1], ["Adelie", "Chinstrap", "Gentoo"]], ids=["binary", "multiclass"])
def test_every_plot_draws_with_its_reference_lines_and_readable_labels(classes, tmp_path, plots_setup):
    chromium()
    project, y, probabilities = plots_project(plots_setup, tmp_path / "project", classes)
    texts, found_texts, dom = drawn_texts(project, tmp_path, CLASSIFICATION)
    assert "Score-Histogram" in texts

    truth, score = curve_inputs(y, probabilities, classes)
    prefix = "" if len(classes) == 2 else "micro-average "
    assert f"workspace: {prefix}AUC {metrics.roc_auc_score(truth, score):.4f}" in texts["ROC"]
    assert "chance" in texts["ROC"]
    assert f"workspace: {prefix}AP {metrics.average_precision_score(truth, score):.4f}" in texts["Precision-Recall"]
    assert f"prevalence {truth.mean():.3f}" in texts["Precision-Recall"]
    assert "perfectly calibrated" in texts["Calibration"]
    for name in ("ROC", "Precision-Recall", "Calibration"):
        # Both axes run from 0 to 1, whatever the data's range.
        assert texts[name].count("0.0") >= 2 and texts[name].count("1.0") >= 2, (name, texts[name])
    # Every cell's count is written in it, with no control to click first.
    labels = np.asarray(classes)[np.argmax(probabilities, axis=1)]
    counts = metrics.confusion_matrix(y, labels, labels=classes)
    assert Counter(f"{count:,}" for count in counts.ravel()) - Counter(texts["Confusion-Matrix"]) == Counter()
    assert "<input" not in dom
    for label in classes:
        assert str(label) in texts["Score-Histogram"]
    for name, found in found_texts.items():
        assert overlapping_labels(found) == [], name


@pytest.mark.slow  # seconds: dvc and Chromium subprocesses
def test_a_regressions_plots_draw_with_their_reference_lines(tmp_path, plots_setup):
    chromium()
    project, _, _ = plots_project(plots_setup, tmp_path / "project", [])
    texts, found_texts, _ = drawn_texts(project, tmp_path, REGRESSION)
    assert set(texts) == {"Predicted-Actual", "Residuals", "Feature-Importance"}
    assert "perfect prediction" in texts["Predicted-Actual"]
    assert "no error" in texts["Residuals"]
    assert {"Actual", "Predicted"} <= set(texts["Predicted-Actual"])
    for name, found in found_texts.items():
        assert overlapping_labels(found) == [], name
