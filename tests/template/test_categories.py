"""`make categories`: recorded lists and classes, written into params.yaml with its comments kept."""

from __future__ import annotations

import pandas as pd
import pytest

from src.pipeline import config
from src.pipeline.adapter import UNKNOWN
from src.pipeline.params import ParamsError, load_params
from src.tools.categories import distinct_categories, distinct_classes, record
from tests.template import frames
from tests.template.frames import ADAPTER, PARAMS

MODELS = ("hist_gradient_boosting", "logistic_regression", "random_forest", "stacking")


def _params_copy(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(config.PARAMS_FILE.read_text())
    return path


def test_distinct_categories_sorted_without_missing():
    if not ADAPTER.categorical:
        pytest.skip("the adapter has no categorical features")
    frame = frames.features(rows=40)
    first = ADAPTER.categorical[0]
    frame[first] = ["b", "a", None, "b"] * 10
    found = distinct_categories(frame, ADAPTER.categorical)
    assert list(found) == list(ADAPTER.categorical)  # the adapter's order: params.yaml's keys follow it
    assert found[first] == ["a", "b"]
    for name in ADAPTER.categorical:
        assert found[name] == sorted(frame[name].dropna().unique()) and None not in found[name]
    with pytest.raises(ValueError, match=rf"lack categorical columns \['{first}'\]"):
        distinct_categories(frame.drop(columns=first), ADAPTER.categorical)


def test_distinct_classes_are_plain_sorted_labels():
    assert distinct_classes(pd.DataFrame({"y": pd.Series([1, 0, 2, 1], dtype="int8")}), "y") == [0, 1, 2]
    assert all(type(v) is int for v in distinct_classes(pd.DataFrame({"y": pd.Series([1, 0], dtype="int8")}), "y"))
    assert distinct_classes(pd.DataFrame({"y": ["b", None, "a", "b"]}), "y") == ["a", "b"]
    for n_classes in (2, 3):
        rows = frames.features(n_classes=n_classes)
        assert distinct_classes(rows, ADAPTER.target) == frames.classes(n_classes)
    with pytest.raises(ValueError, match=f"lack the target column '{ADAPTER.target}'"):
        distinct_classes(rows.drop(columns=ADAPTER.target), ADAPTER.target)


def test_record_keeps_comments_and_layout(tmp_path):
    path = _params_copy(tmp_path)
    original = path.read_text()
    categories = {name: ["a", "zz"] for name in ADAPTER.categorical}
    assert record(path, categories) is True
    text = path.read_text()
    for name in ADAPTER.categorical:
        assert f"  {name}:\n  - a\n  - zz\n" in text  # block lists: one value per line in a diff
    # every comment line survives, and everything before `categories:` (last) is untouched
    assert [line for line in text.splitlines() if line.lstrip().startswith("#")] == [
        line for line in original.splitlines() if line.lstrip().startswith("#")
    ]
    head = lambda t: t.split("\ncategories:")[0]  # noqa: E731
    assert head(text) == head(original)
    assert load_params(path).categories == categories
    assert record(path, categories) is False  # idempotent
    assert path.read_text() == text


def test_record_writes_classes_and_drops_stale_lists(tmp_path):
    path = _params_copy(tmp_path)
    classes = frames.classes(3)
    stale = {**{name: ["a"] for name in ADAPTER.categorical}, "no_longer_a_feature": ["x"]}
    assert record(path, stale, classes) is True
    assert "no_longer_a_feature" in load_params(path).categories
    current = {name: ["a"] for name in ADAPTER.categorical}
    assert record(path, current, classes) is True
    recorded = load_params(path)
    assert recorded.categories == current and recorded.classes == classes
    assert ("classes:\n" + "".join(f"- {c}\n" for c in classes)) in path.read_text()
    assert record(path, current, classes) is False


def test_record_refuses_lists_the_stages_would_refuse(tmp_path):
    path = _params_copy(tmp_path)
    before = path.read_text()
    for categories, classes in [
        ({name: [UNKNOWN] for name in ADAPTER.categorical} or {"x": [UNKNOWN]}, None),
        ({name: ["b", "a"] for name in ADAPTER.categorical} or {"x": ["b", "a"]}, None),
        (PARAMS.categories, [1, 0]),
    ]:
        with pytest.raises(ParamsError):
            record(path, categories, classes)
        assert path.read_text() == before


def test_dvc_set_param_does_not_reflow_the_file(tmp_path):
    # `dvc exp run -S` rewrites params.yaml through dvc's own YAML round-trip:
    # with the recorded layout, only the changed value's line may differ.
    from dvc.utils.serialize import modify_yaml

    path = _params_copy(tmp_path)
    current = PARAMS.train.model
    other = next(model for model in MODELS if model != current)
    with modify_yaml(path) as document:
        document["train"]["model"] = other
    before, after = config.PARAMS_FILE.read_text().splitlines(), path.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=False) if a != b]
    assert len(before) == len(after) and changed == [(f"  model: {current}", f"  model: {other}")]
