"""params.yaml validation: every bad key is named with what was expected, briefly; recorded lists fit the adapter."""

from __future__ import annotations

import copy
import typing

import numpy as np
import pytest
import yaml

from src.pipeline import config
from src.pipeline.adapter import UNKNOWN
from src.pipeline.dataset import check_categories_seen, check_classes, check_recorded, load_adapter
from src.pipeline.params import ModelName, ParamsError, load_params, validate
from src.pipeline.source.moments import as_of_timestamp
from tests.template import frames
from tests.template.frames import ADAPTER

# Longer than any one-problem message; far shorter than a dumped section.
SHORT = 600


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(config.PARAMS_FILE.read_text())


def _refused(raw: dict) -> str:
    with pytest.raises(ParamsError) as error:
        validate(raw)
    return str(error.value)


def test_committed_params_are_valid_and_name_a_loadable_adapter():
    params = load_params()
    adapter, adapter_params = load_adapter(params)
    assert adapter.name == params.dataset.adapter
    assert adapter_params == adapter.parse_params(params.dataset.model_dump())


@pytest.mark.slow
@pytest.mark.parametrize("model", typing.get_args(ModelName))
def test_every_model_the_schema_accepts_fits_and_predicts(raw, model):
    """A name the schema lets through is one the pipeline can build: no choice fails only at train time."""
    raw["train"]["model"] = model
    params = validate(raw)
    pipeline, _, frame = frames.fit(params.train.model, n_classes=3, rows=60)
    probabilities = pipeline.predict_proba(frame[list(ADAPTER.features)])
    assert probabilities.shape == (60, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert list(pipeline.classes_) == frames.classes(3)


def test_an_unknown_model_is_refused_with_the_choices(raw):
    raw["train"]["model"] = "xgboost"
    message = _refused(raw)
    assert "train.model" in message and "'xgboost'" in message
    for choice in typing.get_args(ModelName):
        assert repr(choice) in message
    assert len(message) < SHORT


def test_missing_key_is_named(raw):
    del raw["train"]["hist_gradient_boosting"]["learning_rate"]
    assert "train.hist_gradient_boosting.learning_rate: missing" in _refused(raw)


def test_unknown_key_is_named(raw):
    raw["featurize"]["test_fraction"] = 0.2
    assert "featurize.test_fraction: unknown key" in _refused(raw)


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (("train", "hist_gradient_boosting", "max_iter"), "200", "valid integer"),
        (("train", "hist_gradient_boosting", "max_iter"), 200.5, "valid integer"),
        (("seed",), "42", "valid integer"),
        (("train", "model"), "xgboost", "hist_gradient_boosting"),
        (("train", "random_forest", "min_samples_leaf"), 0, "greater than or equal to 1"),
        (("featurize", "test_percent"), 100, "less than 100"),
        (("train", "stacking", "estimators"), ["logistic_regression"], "at least 2"),
        (("evaluate", "threshold"), 1.0, "less than 1"),
        (("dataset", "adapter"), 7, "valid string"),
    ],
)
def test_wrong_type_or_value_is_named(raw, path, value, expected):
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    message = _refused(raw)
    assert ".".join(path) in message and expected in message
    assert len(message) < SHORT


def test_categories_must_be_sorted_unique_and_free_of_the_unknown_bucket(raw):
    name = next(iter(raw["categories"]), "some_feature")
    for values, expected in [
        (["b", "a"], f"categories.{name} must be sorted"),
        (["a", "a"], f"categories.{name} must be sorted and without duplicates"),
        (sorted(["a", UNKNOWN]), f"categories.{name} must not contain the reserved {UNKNOWN!r}"),
    ]:
        broken = copy.deepcopy(raw)
        broken["categories"][name] = values
        message = _refused(broken)
        assert expected in message and len(message) < SHORT
        assert "reserved" in expected or "make categories" in message


@pytest.mark.parametrize(
    "section",
    [
        "not a mapping " * 500,
        ["a"] * 500,
        {"feature": list(range(500))},  # unquoted codes that YAML reads as numbers
        {"feature": {"nested": "mapping"}},
    ],
    ids=["text", "list", "numbers", "nested"],
)
def test_a_bad_categories_section_gets_a_short_message(raw, section):
    raw["categories"] = section
    message = _refused(raw)
    assert "categories" in message
    assert len(message) < SHORT, f"{len(message)} characters:\n{message[:1000]}"


def test_classes_must_be_sorted_distinct_and_more_than_one(raw):
    for classes, expected in [([1, 0], "sorted"), (["a", "a"], "without duplicates"), ([1], "one class")]:
        message = _refused({**raw, "classes": classes})
        assert "classes" in message and expected in message and len(message) < SHORT


def test_check_recorded_accepts_the_committed_lists():
    params = load_params()
    check_recorded(params, ADAPTER)
    assert all(params.categories.values()), "run `make categories` and commit params.yaml"


@pytest.mark.parametrize(
    "change, expected, needs_categorical",
    [
        (lambda p: {"categories": {}}, "recorded for []", True),
        (
            lambda p: (
                {"categories": dict(reversed(list(p.categories.items())))}
                if len(p.categories) > 1
                else {"categories": {**p.categories, "another": ["x"]}}
            ),
            "the adapter's categorical features are",
            False,
        ),
        (
            lambda p: {"categories": dict(list(p.categories.items())[1:])},
            "the adapter's categorical features are",
            True,
        ),
        (lambda p: {"categories": {name: [] for name in p.categories}}, "no values recorded for", True),
        (lambda p: {"classes": []}, "no classes recorded", False),
        (lambda p: {"classes": ["x", "y"] if isinstance(p.classes[0], int) else [0, 1]}, "but the target", False),
    ],
)
def test_check_recorded_says_make_categories(change, expected, needs_categorical):
    params = frames.PARAMS
    if needs_categorical and not ADAPTER.categorical:
        pytest.skip("the adapter has no categorical features")
    broken = params.model_copy(update=change(params))
    with pytest.raises(ParamsError) as error:
        check_recorded(broken, ADAPTER)
    assert expected in str(error.value) and "make categories" in str(error.value)


def test_the_recorded_lists_are_checked_against_the_training_features():
    params = frames.small_params(n_classes=3)
    frame = frames.features(rows=120, n_classes=3)
    check_classes(frame[ADAPTER.target], params.classes)
    check_categories_seen(frame, params.categories)
    # classes: [0, 2] for labels 0, 1 and 2 (or the text equivalent): both sides named.
    with pytest.raises(ParamsError) as error:
        check_classes(frame[ADAPTER.target], [params.classes[0], params.classes[2]])
    assert f"labels not recorded [{params.classes[1]!r}]" in str(error.value)
    assert "make categories" in str(error.value) and str(error.value).startswith("classes: ")
    with pytest.raises(ParamsError, match=r"recorded classes with no training row"):
        check_classes(frame[ADAPTER.target][frame[ADAPTER.target] != params.classes[2]], params.classes)
    if not ADAPTER.categorical:
        return
    # A list that misses some values is allowed (train warns); one that misses all is refused.
    first = ADAPTER.categorical[0]
    check_categories_seen(frame, {**params.categories, first: params.categories[first][:1]})
    with pytest.raises(ParamsError) as error:
        check_categories_seen(frame, {**params.categories, first: ["no such value"]})
    assert f"no training value is on the recorded list of {first}" in str(error.value)
    assert "make categories" in str(error.value) and len(str(error.value)) < SHORT


@pytest.mark.parametrize(
    "text, line",
    [
        ("seed: 1\nseed: 2\n", "lines 1 and 2"),
        ("train:\n  model: a\n  max_iter: 3\n  model: b\n", "lines 2 and 4"),
        ("categories:\n  x:\n  - a\n  y: []\n  x: []\n", "lines 2 and 5"),
    ],
)
def test_a_duplicated_key_is_refused_as_dvc_refuses_it(tmp_path, text, line):
    # PyYAML would keep the last value silently; DVC's reader refuses the file.
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as error:
        load_params(path)
    assert "appears twice" in str(error.value) and line in str(error.value) and "keep one" in str(error.value)


def test_equal_keys_in_different_sections_and_merge_keys_are_not_duplicates(tmp_path):
    path = tmp_path / "params.yaml"
    committed = config.PARAMS_FILE.read_text()
    path.write_text(committed + "x-anchor: &base {max_iter: 5}\nx-merged: {<<: *base, max_iter: 6}\n")
    with pytest.raises(ParamsError) as error:  # unknown top-level keys, but read without a duplicate error
        load_params(path)
    assert "appears twice" not in str(error.value) and "'x-anchor': unknown key" in str(error.value)


def test_an_unknown_adapter_is_named(raw):
    raw["dataset"] = {"adapter": "no_such_dataset"}
    with pytest.raises(ParamsError, match=r"dataset\.adapter.*no package src/datasets/no_such_dataset/"):
        load_adapter(validate(raw))
    raw["dataset"] = {"adapter": "../etc"}
    with pytest.raises(ParamsError, match="not a package name"):
        load_adapter(validate(raw))


def test_the_adapters_own_section_is_validated(raw):
    raw["dataset"]["no_such_setting"] = 1
    with pytest.raises(ParamsError, match=r"dataset\.no_such_setting: unknown key"):
        load_adapter(validate(raw))


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
    message = _refused(raw)
    assert "gather.as_of" in message and len(message) < SHORT
