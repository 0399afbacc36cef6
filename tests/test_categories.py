"""`make categories`: recorded lists, written into params.yaml with its comments kept."""
from __future__ import annotations

import pandas as pd
import pytest

from src.pipeline import config
from src.tools.categories import distinct_categories, record
from src.pipeline.params import ParamsError, load_params


def test_distinct_categories_sorted_without_missing():
    frame = pd.DataFrame({"carrier": ["UA", "AA", None, "UA"], "origin": ["JFK"] * 4,
                          "dest": ["SFO", "LAX", "LAX", "BOS"], "manufacturer": [None] * 3 + ["BOEING"]})
    assert distinct_categories(frame) == {
        "carrier": ["AA", "UA"], "origin": ["JFK"], "dest": ["BOS", "LAX", "SFO"], "manufacturer": ["BOEING"]}
    with pytest.raises(ValueError, match=r"lack categorical columns \['dest'\]"):
        distinct_categories(frame.drop(columns="dest"))


def test_record_keeps_comments_and_layout(tmp_path):
    path = tmp_path / "params.yaml"
    original = config.PARAMS_FILE.read_text()
    path.write_text(original)
    categories = {"carrier": ["AA", "ZZ"], "origin": ["JFK"], "dest": ["LAX"], "manufacturer": ["AIRBUS", "BOEING"]}
    assert record(path, categories) is True
    text = path.read_text()
    assert "  carrier:\n  - AA\n  - ZZ\n" in text and "  manufacturer:\n  - AIRBUS\n  - BOEING\n" in text
    # every comment line survives, and everything outside `categories:` is untouched
    assert [l for l in text.splitlines() if l.lstrip().startswith("#")] == \
        [l for l in original.splitlines() if l.lstrip().startswith("#")]
    head = lambda t: t.split("\ncategories:")[0]  # noqa: E731
    assert head(text) == head(original)
    assert load_params(path).categories == categories
    assert record(path, categories) is False  # idempotent
    assert path.read_text() == text


def test_record_refuses_lists_the_stages_would_refuse(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(config.PARAMS_FILE.read_text())
    before = path.read_text()
    with pytest.raises(ParamsError):
        record(path, {"carrier": ["AA"], "origin": ["JFK"], "dest": ["LAX"], "manufacturer": ["__unknown__"]})
    assert path.read_text() == before


def test_committed_params_categories_are_recorded():
    params = load_params()
    assert all(params.categories.values()), "run `make categories` and commit params.yaml"


def test_dvc_set_param_does_not_reflow_the_file(tmp_path):
    # `dvc exp run -S` rewrites params.yaml through dvc's own YAML round-trip:
    # with the recorded layout, only the changed value's line may differ.
    from dvc.utils.serialize import modify_yaml

    path = tmp_path / "params.yaml"
    path.write_text(config.PARAMS_FILE.read_text())
    with modify_yaml(path) as document:
        document["train"]["model"] = "stacking"
    before, after = config.PARAMS_FILE.read_text().splitlines(), path.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and changed == [("  model: hist_gradient_boosting", "  model: stacking")]
