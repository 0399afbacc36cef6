"""params.yaml validation: every bad key is named, with what was expected."""
from __future__ import annotations

import copy

import pytest
import yaml

from src.pipeline import config
from src.pipeline.params import ParamsError, as_of_timestamp, load_params, validate


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(config.PARAMS_FILE.read_text())


def test_committed_params_are_valid():
    params = load_params()
    assert params.train.model in ("hist_gradient_boosting", "logistic_regression", "random_forest", "stacking")


def test_missing_key_is_named(raw):
    del raw["train"]["hist_gradient_boosting"]["learning_rate"]
    with pytest.raises(ParamsError, match=r"train\.hist_gradient_boosting\.learning_rate: missing"):
        validate(raw)


def test_unknown_key_is_named(raw):
    raw["featurize"]["test_fraction"] = 0.2
    with pytest.raises(ParamsError, match=r"featurize\.test_fraction: unknown key"):
        validate(raw)


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (("train", "hist_gradient_boosting", "max_iter"), "200", "valid integer"),
        (("train", "hist_gradient_boosting", "max_iter"), 200.5, "valid integer"),
        (("seed",), "42", "valid integer"),
        (("train", "model"), "xgboost", "hist_gradient_boosting"),
        (("train", "threads"), 0, "greater than or equal to 1"),
        (("featurize", "test_percent"), 100, "less than 100"),
        (("train", "stacking", "estimators"), ["logistic_regression"], "at least 2"),
    ],
)
def test_wrong_type_or_value_is_named(raw, path, value, expected):
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ParamsError) as error:
        validate(raw)
    message = str(error.value)
    assert ".".join(path) in message and expected in message


def test_categories_must_be_sorted_and_complete(raw):
    broken = copy.deepcopy(raw)
    broken["categories"]["origin"] = ["LGA", "EWR"]
    with pytest.raises(ParamsError, match="categories.origin must be sorted"):
        validate(broken)
    broken = copy.deepcopy(raw)
    del broken["categories"]["dest"]
    with pytest.raises(ParamsError, match="make categories"):
        validate(broken)


def test_not_yaml_is_a_clear_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "absent.yaml")


def test_as_of_forms():
    assert as_of_timestamp("2013-06-30") == "2013-06-30 23:59:59"
    assert as_of_timestamp("2013-06-30T12:00:00Z") == "2013-06-30 12:00:00"
    assert as_of_timestamp("2013-06-30T14:00:00+02:00") == "2013-06-30 12:00:00"
    for bad in ("2013-06-31", "yesterday", "2013-06-30T12:00:00"):
        with pytest.raises(ValueError, match="as_of"):
            as_of_timestamp(bad)


def test_bad_as_of_names_the_key(raw):
    raw["gather"]["as_of"] = "next week"
    with pytest.raises(ParamsError, match=r"gather\.as_of"):
        validate(raw)
