"""Feature selection (train.feature_selection) on tiny frames: off by default, recorded, thread-invariant."""

from __future__ import annotations

import hashlib
import json
import pickle

import numpy as np
import pytest
import yaml
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from src.pipeline import artifact, config, files, train
from src.pipeline.dataset import check_recorded
from src.pipeline.model import build_pipeline, normalise_threads, thread_limits
from src.pipeline.params import ParamsError, validate
from src.pipeline.selection import SelectFeatures, ranking
from src.serving import predict
from src.serving.contract import ContractError
from tests.conftest import ROOT
from tests.template import frames
from tests.template.frames import ADAPTER
from tests.template.test_model import stage_in_tmp

FEATURES = list(ADAPTER.features)
both_kinds = pytest.mark.skipif(
    not (ADAPTER.categorical and ADAPTER.numeric),
    reason="the tiny frames' signal needs a categorical and a numeric feature",
)


def selecting(params, **changes):
    """`params` with selection on (permutation), `changes` applied to its section."""
    section = params.train.feature_selection.model_copy(update={"method": "permutation", "keep": 2, **changes})
    return params.model_copy(update={"train": params.train.model_copy(update={"feature_selection": section})})


def fitted_bytes(params, rows, threads: int = 1) -> tuple[bytes, object]:
    model = build_pipeline(params.train, params.categories, ADAPTER.numeric, params.seed, threads)
    with threadpool_limits(limits=thread_limits(threads)):
        model.fit(rows[FEATURES], rows[ADAPTER.target])
    normalise_threads(model)
    return pickle.dumps(model, protocol=artifact.PICKLE_PROTOCOL), model


def raw_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


# --- off by default: nothing changes ------------------------------------------


def test_selection_is_off_in_the_committed_params():
    assert frames.PARAMS.train.feature_selection.method == "none"


def test_off_the_model_and_manifest_are_what_they_were(tmp_path):
    params = frames.small_params()
    rows = frames.features(120)
    off, model = fitted_bytes(params, rows)
    assert isinstance(model, Pipeline) and [name for name, _ in model.steps] == ["bucket", "preprocess", "estimator"]
    assert b"selection" not in off  # no selection step is pickled
    # Off, the other keys change nothing: the same bytes whatever keep says.
    other = params.model_copy(
        update={
            "train": params.train.model_copy(
                update={
                    "feature_selection": params.train.feature_selection.model_copy(update={"keep": 3, "repeats": 9})
                }
            )
        }
    )
    assert fitted_bytes(other, rows)[0] == off
    _, _, manifest = frames.save(tmp_path, params=params)
    assert "feature_selection" not in manifest
    # The digest is the one computed before the key existed, so the manifest's bytes do not move.
    before = {
        "seed": params.seed,
        "train": params.train.model_dump(exclude={"cv_folds", "feature_selection"}),
        "categories": params.categories,
        "classes": params.classes,
    }
    assert manifest["params_sha256"] == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()
    assert train.params_digest(other) == train.params_digest(params)
    assert train.params_digest(selecting(params)) != train.params_digest(params)


# --- on: recorded, and the full contract still served ------------------------


@pytest.mark.slow
@both_kinds
def test_on_the_manifest_lists_the_relevant_features_in_order(tmp_path):
    # The tiny frames' target follows the first categorical and the first numeric feature.
    params = selecting(frames.small_params(), keep=2)
    _, _, manifest = frames.save(tmp_path, params=params)
    record = manifest["feature_selection"]
    expected = [name for name in FEATURES if name in (ADAPTER.categorical[0], ADAPTER.numeric[0])]
    assert record["selected_features"] == expected
    assert record["method"] == "permutation" and record["keep"] == 2
    assert list(record["importances"]) == FEATURES
    ranked = sorted(FEATURES, key=lambda name: -record["importances"][name])
    assert set(ranked[:2]) == set(expected)
    assert manifest["features"] == FEATURES  # the contract stays the full list
    assert manifest["learned"]  # the kept pipeline's fitted state is still recorded
    assert manifest["seeds"]["random_state"] == params.seed
    assert all(value == params.seed for value in manifest["seeds"].values())


@pytest.mark.slow
def test_a_fraction_keeps_that_share_rounded_up(tmp_path):
    params = selecting(frames.small_params("logistic_regression"), keep=0.25)
    _, _, manifest = frames.save(tmp_path, params=params)
    kept = manifest["feature_selection"]["selected_features"]
    assert len(kept) == -(-len(FEATURES) // 4)
    assert kept == [name for name in FEATURES if name in kept]  # in the adapter's order


@pytest.mark.slow
@pytest.mark.parametrize("model", ["hist_gradient_boosting", "stacking"])
def test_serving_takes_full_rows_and_the_dropped_features_change_nothing(tmp_path, model):
    params = selecting(frames.small_params(model, 3), keep=2)
    model_path, manifest_path, manifest = frames.save(tmp_path, model, 3, params=params)
    loaded, manifest = artifact.load_model(model_path, manifest_path)
    deployed = predict.Deployed(loaded, manifest, frames.PARAMS.evaluate.threshold, 1)
    rows = frames.features(30, 3, seed=5)
    kept = manifest["feature_selection"]["selected_features"]
    result = deployed.predict(rows)
    assert result.probabilities.shape == (len(rows), 3)
    assert result.probabilities.tobytes() == loaded.pipeline_.predict_proba(rows[kept]).tobytes()
    dropped = [name for name in FEATURES if name not in kept]
    shuffled = rows.copy()
    for name in dropped:
        shuffled[name] = rows[name].sample(frac=1.0, random_state=1).to_numpy()
    assert deployed.predict(shuffled).probabilities.tobytes() == result.probabilities.tobytes()
    with pytest.raises(ContractError, match=dropped[0]):  # the contract is still every feature
        deployed.predict(rows.drop(columns=dropped[0]))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["hist_gradient_boosting", "random_forest"])
def test_the_train_stage_selects_the_same_and_writes_the_same_bytes_on_any_thread_count(model, tmp_path, monkeypatch):
    params = selecting(frames.small_params(model, 3), keep=3)
    stage_in_tmp(tmp_path, monkeypatch, params)
    files.write_frame(config.TRAIN_FEATURES, frames.features(240, 3), ADAPTER.features_schema)
    written = {}
    for threads in ("1", "2", "4"):
        monkeypatch.setenv(config.THREADS_ENV, threads)
        train.main()  # its cross-validation folds select on their own training part
        written[threads] = (
            config.MODEL.read_bytes(),
            config.MANIFEST.read_bytes(),
            config.VALIDATION_METRICS.read_bytes(),
        )
    assert written["1"] == written["2"] == written["4"]
    manifest = json.loads(written["1"][1])
    assert len(manifest["feature_selection"]["selected_features"]) == 3


@pytest.mark.slow
def test_a_refit_selects_the_same_features_and_bytes():
    params = selecting(frames.small_params("stacking"), keep=3)
    rows = frames.features(160)
    first, model = fitted_bytes(params, rows, threads=2)
    assert fitted_bytes(params, rows, threads=4)[0] == first
    assert isinstance(model, SelectFeatures) and model.threads == 1  # reset before pickling, as n_jobs is


# --- the ranking: stable ties -------------------------------------------------


def test_ties_go_to_the_earlier_feature_and_the_kept_come_in_input_order():
    assert ranking(np.array([0.1, 0.3, 0.3, 0.0]), 2) == [1, 2]
    assert ranking(np.array([0.2, 0.2, 0.2]), 1) == [0]
    assert ranking(np.array([0.0, 0.5, 0.0, 0.0]), 3) == [0, 1, 2]
    # A last-bit difference is no difference.
    assert ranking(np.array([0.3, 0.3 + 1e-16]), 1) == [0]
    assert ranking(np.array([0.3, 0.3 + 1e-9]), 1) == [1]


# --- bad params are refused, naming the key -----------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("keep", "three", "a count of features"),
        ("keep", True, "a count of features"),
        ("keep", None, "a count of features"),
        ("keep", 0, "at least 1"),
        ("keep", -2, "at least 1"),
        ("keep", 0.0, "in (0, 1]"),
        ("keep", 1.5, "in (0, 1]"),
        ("method", "lasso", "'none' or 'permutation'"),
        ("holdout", 0.0, "greater than 0"),
        ("holdout", 1.0, "less than 1"),
        ("repeats", 0, "greater than or equal to 1"),
    ],
)
def test_a_bad_value_is_refused_naming_the_key(key, value, expected):
    raw = raw_params()
    raw["train"]["feature_selection"][key] = value
    with pytest.raises(ParamsError) as caught:
        validate(raw)
    assert f"train.feature_selection.{key}: " in str(caught.value)
    assert expected in str(caught.value)


def test_a_missing_section_is_refused_naming_it():
    raw = raw_params()
    del raw["train"]["feature_selection"]
    with pytest.raises(ParamsError, match=r"train\.feature_selection: missing"):
        validate(raw)


def test_keeping_more_features_than_there_are_is_refused_before_any_fit():
    params = selecting(frames.small_params(), keep=len(FEATURES) + 1)
    message = rf"train\.feature_selection\.keep is {len(FEATURES) + 1}, but there are only {len(FEATURES)} features"
    with pytest.raises(ParamsError, match=message):
        check_recorded(params, ADAPTER)
    with pytest.raises(ParamsError, match=message):
        build_pipeline(params.train, params.categories, ADAPTER.numeric, params.seed)
    # Every feature is allowed.
    build_pipeline(selecting(params, keep=len(FEATURES)).train, params.categories, ADAPTER.numeric, params.seed)


def test_a_holdout_too_small_for_the_classes_is_refused_naming_it():
    params = selecting(frames.small_params(n_classes=3), holdout=0.05)
    rows = frames.features(30, 3)
    model = build_pipeline(params.train, params.categories, ADAPTER.numeric, params.seed)
    with pytest.raises(ParamsError, match=r"train\.feature_selection\.holdout is 0\.05"):
        model.fit(rows[FEATURES], rows[ADAPTER.target])


@pytest.mark.slow
def test_evaluate_runs_on_a_selected_model_and_finds_no_use_of_the_dropped_features(tmp_path, monkeypatch):
    from src.pipeline import evaluate
    from tests.template.test_model import eval_files, quick_params, record_train_outputs

    params = selecting(quick_params(), keep=2)
    stage_in_tmp(tmp_path, monkeypatch, params)
    rows = frames.features(160)
    files.write_frame(config.TRAIN_FEATURES, rows, ADAPTER.features_schema)
    files.write_frame(config.TEST_FEATURES, rows.tail(60), ADAPTER.features_schema)
    train.main()
    record_train_outputs(tmp_path)
    evaluate.main()
    kept = json.loads(config.MANIFEST.read_text())["feature_selection"]["selected_features"]
    [importance] = [json.loads(content) for path, content in eval_files().items() if "importance" in path]
    points = next(iter(importance.values())) if isinstance(importance, dict) else importance
    by_feature = {point["feature"]: float(point["importance"]) for point in points}
    assert set(by_feature) == set(FEATURES)  # evaluate still permutes every feature of the contract
    assert all(by_feature[name] == 0.0 for name in FEATURES if name not in kept)
    assert any(by_feature[name] != 0.0 for name in kept)
