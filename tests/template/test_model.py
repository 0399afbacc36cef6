"""The model, its evaluation and its predictions table on tiny frames, for two and for three classes."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from sklearn import metrics
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

from src.pipeline import artifact, config, evaluate, files, predictions, train
from src.pipeline.adapter import UNKNOWN
from src.pipeline.dataset import check_classes
from src.pipeline.featurize import is_test
from src.pipeline.model import (
    HGB_MAX_CATEGORIES,
    UnknownBucket,
    build_pipeline,
    count_unknown,
    fitted_state,
    normalise_threads,
    structure,
    thread_limits,
)
from src.pipeline.train import build_manifest, params_digest, unknown_warning
from tests.conftest import ROOT
from tests.template import frames
from tests.template.frames import ADAPTER, LEVELS, UNSEEN

MODELS = ["hist_gradient_boosting", "logistic_regression", "random_forest", "mlp", "stacking"]
needs_categorical = pytest.mark.skipif(not ADAPTER.categorical, reason="the adapter has no categorical features")
needs_numeric = pytest.mark.skipif(not ADAPTER.numeric, reason="the adapter has no numeric features")


@needs_categorical
def test_unknown_bucket_maps_unseen_and_missing():
    first = ADAPTER.categorical[0]
    frame = frames.features(rows=3)[list(ADAPTER.features)]
    frame[first] = [LEVELS[0], UNSEEN, None]
    out = UnknownBucket(frames.categories()).fit_transform(frame)
    assert out[first].tolist() == [LEVELS[0], UNKNOWN, UNKNOWN]
    assert frame[first].tolist()[:2] == [LEVELS[0], UNSEEN] and pd.isna(frame[first].iloc[2])  # not changed
    counts = count_unknown(frame, frames.categories())
    assert counts[first] == {"unknown": 1, "missing": 1}
    assert list(counts) == list(ADAPTER.categorical)


@pytest.mark.slow
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("model", MODELS)
def test_every_model_fits_predicts_unknowns_and_is_deterministic(model, n_classes):
    first, params, frame = frames.fit(model, n_classes)
    second, _, _ = frames.fit(model, n_classes)
    assert pickle.dumps(first, protocol=5) == pickle.dumps(second, protocol=5)
    assert list(first.classes_) == params.classes == frames.classes(n_classes)
    X = frame[list(ADAPTER.features)]
    unseen = X.head(3).copy()
    for name in ADAPTER.categorical:
        unseen[name] = [UNSEEN, None, LEVELS[0]]
    probabilities = first.predict_proba(unseen)
    assert probabilities.shape == (3, n_classes) and np.isfinite(probabilities).all()
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    # the model learned something: better than the majority class on its own training rows
    assert metrics.accuracy_score(frame[ADAPTER.target], first.predict(X)) > 1 / n_classes + 0.1
    if ADAPTER.numeric:
        gappy = ADAPTER.numeric[-1]
        state = fitted_state(first)
        imputed = [value for key, value in state.items() if key.endswith("impute_values")]
        assert imputed and all(gappy in values for values in imputed)
        assert np.isclose(imputed[0][gappy], X[gappy].median())  # impute_strategy: median, from training rows
        if model in ("logistic_regression", "mlp", "stacking"):
            ranges = [value for key, value in state.items() if key.endswith("ranges")]
            column = ADAPTER.numeric[0]
            assert ranges and ranges[0][column] == [X[column].min(), X[column].max()]


def test_another_seed_gives_another_forest():
    first, params, frame = frames.fit("random_forest")
    other = build_pipeline(params.train, params.categories, ADAPTER.numeric, params.seed + 1)
    other.fit(frame[list(ADAPTER.features)], frame[ADAPTER.target])
    assert pickle.dumps(first, protocol=5) != pickle.dumps(other, protocol=5)


@pytest.mark.slow
def test_another_seed_gives_another_network():
    first, params, frame = frames.fit("mlp")
    other = build_pipeline(params.train, params.categories, ADAPTER.numeric, params.seed + 1)
    other.fit(frame[list(ADAPTER.features)], frame[ADAPTER.target])
    weights = lambda fitted: fitted.named_steps["estimator"].coefs_[0]  # noqa: E731
    assert weights(first).shape == weights(other).shape and not np.array_equal(weights(first), weights(other))


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_the_manifest_records_every_seed_the_fitted_model_holds(model):
    fitted, params, frame = frames.fit(model)
    manifest = build_manifest(
        params, ADAPTER, fitted, "sha", "data-sha", len(frame), count_unknown(frame, params.categories)
    )
    recorded = manifest["seeds"]
    assert recorded and set(recorded.values()) == {params.seed}
    # Every estimator with a random_state is listed, and every CV splitter.
    estimators = [
        path
        for path, value in fitted.get_params(deep=True).items()
        if hasattr(value, "random_state") and not isinstance(value, type)
    ]
    assert {
        f"{path}__random_state" if not hasattr(value, "split") else f"{path}.random_state"
        for path, value in fitted.get_params(deep=True).items()
        if path in estimators
    } == set(recorded)
    if model == "mlp":
        # one integer seeds its weights, early-stopping split and batch shuffling (docs/reproducibility.md)
        assert recorded == {"estimator__random_state": params.seed}
    if model == "stacking":
        assert recorded["estimator__cv.random_state"] == params.seed
    assert manifest["validation"]["seed"] == params.seed


ESTIMATOR_CLASSES = {
    "hist_gradient_boosting": HistGradientBoostingClassifier,
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "mlp": MLPClassifier,
}


def _check_described(described: dict, fitted) -> None:
    """The manifest's description of one estimator is what the fitted one was configured with."""
    assert isinstance(fitted, ESTIMATOR_CLASSES[described["estimator"]])
    configured = fitted.get_params(deep=False)
    assert {key: configured[key] for key in described["hyperparameters"]} == described["hyperparameters"]


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_the_manifest_describes_the_fitted_estimators(model):
    # Read off the fitted pipeline, not params: a hyperparameter that never
    # reached its estimator, or a base estimator in another order, fails here.
    fitted, params, _ = frames.fit(model)
    described, estimator = structure(params.train), fitted.named_steps["estimator"]
    if model != "stacking":
        _check_described(described, estimator)
        return
    assert described["cv_folds"] == estimator.cv.get_n_splits()
    assert [base["estimator"] for base in described["base_estimators"]] == list(estimator.named_estimators_)
    for base in described["base_estimators"]:
        _check_described(base, estimator.named_estimators_[base["estimator"]].named_steps["estimator"])
    _check_described(described["final_estimator"], estimator.final_estimator_)


@needs_categorical
def test_empty_or_oversized_category_lists_are_refused():
    params = frames.small_params("logistic_regression")
    first = ADAPTER.categorical[0]
    with pytest.raises(ValueError, match="make categories"):
        build_pipeline(params.train, {**params.categories, first: []}, ADAPTER.numeric, 1)
    many = {**params.categories, first: [f"v{i:04d}" for i in range(HGB_MAX_CATEGORIES + 1)]}
    build_pipeline(params.train, many, ADAPTER.numeric, 1)  # one-hot takes any number
    with pytest.raises(ValueError, match=f"at most {HGB_MAX_CATEGORIES} categories"):
        build_pipeline(frames.small_params("hist_gradient_boosting").train, many, ADAPTER.numeric, 1)


def test_training_labels_must_be_the_recorded_classes():
    classes = frames.classes(3)
    check_classes(pd.Series(classes * 2), classes)
    with pytest.raises(ValueError, match=r"labels not recorded.*make categories"):
        check_classes(pd.Series(classes), classes[:2])
    with pytest.raises(ValueError, match="recorded classes with no training row"):
        check_classes(pd.Series(classes[:2]), classes)


def test_train_warns_with_the_counts_when_training_rows_fall_in_the_unknown_bucket():
    params = frames.small_params()
    frame = frames.features(rows=120)
    assert unknown_warning(frame, params.categories) is None
    if not ADAPTER.categorical:
        return
    first = ADAPTER.categorical[0]
    kept = params.categories[first][1:]  # one value dropped from the list, as by mistake
    dropped = params.categories[first][0]
    expected = int((frame[first] == dropped).sum())
    assert expected, "the tiny frame has the first value"
    warning = unknown_warning(frame, {**params.categories, first: kept})
    assert warning.startswith("train: warning: ") and "unknown bucket" in warning and "make categories" in warning
    assert f"{first}: {expected:,} of {len(frame):,} rows ({dropped!r} {expected:,})" in warning
    assert count_unknown(frame, {**params.categories, first: kept})[first]["unknown"] == expected
    # Missing values are not a dropped list entry: no warning for them alone.
    gaps = frame.assign(**{first: frame[first].where(frame.index % 2 == 0)})
    assert unknown_warning(gaps, params.categories) is None


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_manifest_describes_the_model(n_classes):
    model, params, frame = frames.fit("logistic_regression", n_classes)
    manifest = build_manifest(
        params, ADAPTER, model, "sha", "data-sha", len(frame), count_unknown(frame, params.categories)
    )
    assert manifest["classes"] == frames.classes(n_classes) and manifest["target"] == ADAPTER.target
    assert manifest["features"] == list(ADAPTER.features) and manifest["id"] == ADAPTER.id
    assert pa.type_for_alias(manifest["target_type"]) == ADAPTER.target_type
    assert manifest["ranges"] == {name: list(bounds) for name, bounds in ADAPTER.feature_ranges.items()}
    assert manifest["dataset"] == ADAPTER.name and manifest["params_sha256"] == params_digest(params)
    assert manifest["unknown_category"] == UNKNOWN and manifest["categories"] == params.categories
    changed = params.model_copy(update={"seed": params.seed + 1})
    assert params_digest(changed) != params_digest(params)


# --- evaluation -----------------------------------------------------------


def test_binary_scores_are_sklearns_on_the_positive_class():
    classes = frames.classes(2)
    y = pd.Series([classes[i] for i in [0, 0, 1, 1, 1, 0]], dtype=ADAPTER.target_type.to_pandas_dtype()).to_numpy()
    positive = np.array([0.1, 0.6, 0.7, 0.4, 0.9, 0.2])
    probabilities = np.column_stack([1 - positive, positive])
    scores = evaluate.scores(y, probabilities, classes, threshold=0.5)
    truth = np.array([0, 0, 1, 1, 1, 0])
    assert scores["roc_auc"] == round(metrics.roc_auc_score(truth, positive), 12)
    assert scores["accuracy"] == round(4 / 6, 12)
    assert scores["f1"] == round(metrics.f1_score(truth, positive >= 0.5), 12)
    assert set(scores) == {"roc_auc", "average_precision", "log_loss", "brier", "accuracy", "f1"}
    assert evaluate.scores(y, probabilities, classes, threshold=0.95)["accuracy"] == 0.5  # nothing positive
    curve_truth, curve_score = evaluate.curve_inputs(y, probabilities, classes)
    assert curve_truth.tolist() == truth.tolist() and np.array_equal(curve_score, positive)


@pytest.mark.parametrize("classes, dtype", [([0, 1, 2], "int8"), (["x", "y", "z"], "str"), (frames.classes(3), None)])
def test_multiclass_scores_and_micro_averaged_curves(classes, dtype):
    # y as the evaluate stage reads it: the test features' target column
    y = pd.Series([classes[i] for i in [0, 1, 2, 2]], dtype=dtype or ADAPTER.target_type.to_pandas_dtype()).to_numpy()
    probabilities = np.array([[0.8, 0.1, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    scores = evaluate.scores(y, probabilities, classes, threshold=0.5)
    assert set(scores) == {"roc_auc_ovr", "log_loss", "accuracy", "f1_macro"}
    assert scores["accuracy"] == 0.75
    assert scores["log_loss"] == round(metrics.log_loss([0, 1, 2, 2], probabilities), 12)
    truth, score = evaluate.curve_inputs(y, probabilities, classes)
    assert truth.tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1]  # one yes/no per row and class
    assert np.array_equal(score, probabilities.ravel())


@pytest.mark.slow
@pytest.mark.parametrize("n_classes", [2, 3])
def test_permutation_importance_names_every_feature(n_classes):
    model, params, frame = frames.fit("logistic_regression", n_classes)
    X, y = frame[list(ADAPTER.features)], frame[ADAPTER.target]
    importance, title = evaluate.importances(model, X, y, params.classes, rows=50, repeats=2, seed=params.seed)
    again, _ = evaluate.importances(model, X, y, params.classes, rows=50, repeats=2, seed=params.seed)
    assert sorted(importance["feature"]) == sorted(ADAPTER.features)
    assert importance["importance"].is_monotonic_decreasing
    assert importance.equals(again)
    assert title == ("ROC AUC" if n_classes == 2 else "one-vs-rest ROC AUC")


# --- the stages' main functions, on tiny features in a temporary folder ------


def stage_in_tmp(tmp_path, monkeypatch, params) -> None:
    """Point every stage path, dvc.lock included, into tmp_path, and give the stages `params`."""
    for name in (
        "TRAIN_FEATURES",
        "TEST_FEATURES",
        "MODEL",
        "MANIFEST",
        "VALIDATION_METRICS",
        "EVAL_DIR",
        "METRICS",
        "PREDICTIONS",
        "DVC_LOCK",
    ):
        monkeypatch.setattr(config, name, tmp_path / getattr(config, name).relative_to(config.ROOT))
    monkeypatch.setattr(config, "ROOT", tmp_path)
    for stage in (train, evaluate):
        monkeypatch.setattr(stage, "load_params", lambda: params)


def record_train_outputs(root) -> None:
    """What DVC does between the train and evaluate stages: record train's outputs' MD5s in dvc.lock."""
    outs = [
        {"path": path, "hash": "md5", "md5": hashlib.md5((root / path).read_bytes()).hexdigest()}
        for path in ("models/model.pkl", "models/manifest.json")
    ]
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"train": {"outs": outs}}}))


def test_evaluate_refuses_a_model_that_dvc_lock_does_not_vouch_for(tmp_path, monkeypatch):
    n_classes = 2
    params = frames.small_params("logistic_regression", n_classes)
    stage_in_tmp(tmp_path, monkeypatch, params)
    rows = frames.features(120, n_classes)
    files.write_frame(config.TRAIN_FEATURES, rows, ADAPTER.features_schema)
    files.write_frame(config.TEST_FEATURES, rows, ADAPTER.features_schema)
    train.main()
    record_train_outputs(tmp_path)
    # A swapped pickle with a manifest edited to match passes the manifest's check, not dvc.lock's.
    swapped = pickle.dumps({"not": "the trained model"}, protocol=5)
    config.MODEL.write_bytes(swapped)
    manifest = json.loads(config.MANIFEST.read_text())
    manifest["model_sha256"] = hashlib.sha256(swapped).hexdigest()
    config.MANIFEST.write_text(json.dumps(manifest))
    with pytest.raises(artifact.ArtifactError, match="does not match .* recorded in"):
        evaluate.main()
    assert not config.PREDICTIONS.exists()


@pytest.mark.slow
@pytest.mark.parametrize("n_classes", [2, 3])
def test_train_and_evaluate_stages_write_what_dvc_yaml_declares(n_classes, tmp_path, monkeypatch):
    ROOT = config.ROOT
    params = frames.small_params("logistic_regression", n_classes)
    stage_in_tmp(tmp_path, monkeypatch, params)
    rows = frames.features(240, n_classes)
    held_out = is_test(rows[ADAPTER.id], 25, params.seed)
    files.write_frame(config.TRAIN_FEATURES, rows[~held_out], ADAPTER.features_schema)
    files.write_frame(config.TEST_FEATURES, rows[held_out].reset_index(drop=True), ADAPTER.features_schema)

    train.main()
    record_train_outputs(tmp_path)
    evaluate.main()

    written = pd.read_parquet(config.PREDICTIONS)
    assert pq.read_schema(config.PREDICTIONS).remove_metadata() == predictions.predictions_schema(
        ADAPTER.id, params.classes, ADAPTER.target_type
    )
    assert written[ADAPTER.id].tolist() == rows[held_out][ADAPTER.id].tolist()
    assert set(written["label"]) <= set(params.classes)
    scores = json.loads(config.METRICS.read_text())
    expected = {"roc_auc", "f1"} if n_classes == 2 else {"roc_auc_ovr", "f1_macro"}
    assert expected <= set(scores) and scores["rows"]["test"] == int(held_out.sum())
    assert_declared_plots_written(ROOT, tmp_path, ADAPTER.task)


def assert_declared_plots_written(root: Path, written_root: Path, task: str) -> None:
    """Every plot that dvc.yaml declares for `task` is written with the fields it draws; the other task's are not."""
    declared = yaml.safe_load((root / "dvc.yaml").read_text())["plots"]
    files_declared = {Path(path).stem for plot in declared for spec in plot.values() for path in spec["y"]}
    assert files_declared == set().union(*evaluate.PLOTS.values())
    for plot in declared:
        ((title, spec),) = plot.items()
        for path, fields in spec["y"].items():
            written = written_root / path
            if Path(path).stem not in evaluate.PLOTS[task]:
                assert not written.exists(), f"{title}: {path} is not a {task}'s plot"
                continue
            assert written.is_file(), f"{title}: {path} was not written"
            for field in [spec["x"], *([fields] if isinstance(fields, str) else fields)]:
                assert f'"{field}"' in written.read_text(), f"{title}: {path} lacks {field!r}"


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_the_train_stage_writes_the_same_bytes_on_any_thread_count(model, tmp_path, monkeypatch):
    params = frames.small_params(model, 3)
    stage_in_tmp(tmp_path, monkeypatch, params)
    rows = frames.features(240, 3)
    files.write_frame(config.TRAIN_FEATURES, rows, ADAPTER.features_schema)
    written = {}
    for threads in ("1", "2", "4"):
        monkeypatch.setenv(config.THREADS_ENV, threads)
        train.main()
        written[threads] = (
            config.MODEL.read_bytes(),
            config.MANIFEST.read_bytes(),
            config.VALIDATION_METRICS.read_bytes(),
        )
    assert written["1"] == written["2"] == written["4"]
    # What the reset is for: fitted on two threads, HistGradientBoosting keeps the count.
    if model in ("hist_gradient_boosting", "stacking") and len(os.sched_getaffinity(0)) >= 2:
        refit = build_pipeline(params.train, params.categories, ADAPTER.numeric, params.seed, threads=2)
        with threadpool_limits(limits=thread_limits(2)):
            refit.fit(rows[list(ADAPTER.features)], rows[ADAPTER.target])
        assert pickle.dumps(refit, protocol=5) != written["2"][0]
        assert pickle.dumps(normalise_threads(refit), protocol=5) == written["2"][0]


def test_a_bad_thread_setting_stops_train_naming_it(tmp_path, monkeypatch):
    stage_in_tmp(tmp_path, monkeypatch, frames.small_params())
    files.write_frame(config.TRAIN_FEATURES, frames.features(60), ADAPTER.features_schema)
    monkeypatch.setenv(config.THREADS_ENV, "0")
    with pytest.raises(ValueError, match=f"{config.THREADS_ENV}='0'"):
        train.main()
    assert not config.MODEL.exists()


# --- evaluate's outputs land whole ------------------------------------------


def quick_params():
    """A tiny linear model, and one permutation per feature: evaluate in about a second."""
    params = frames.small_params("logistic_regression")
    return params.model_copy(update={"evaluate": params.evaluate.model_copy(update={"importance_repeats": 1})})


def evaluated(tmp_path, monkeypatch) -> dict[str, bytes]:
    """Train and evaluate a tiny model in tmp_path; return eval/'s files' bytes by relative path."""
    stage_in_tmp(tmp_path, monkeypatch, quick_params())
    rows = frames.features(160)
    files.write_frame(config.TRAIN_FEATURES, rows, ADAPTER.features_schema)
    files.write_frame(config.TEST_FEATURES, rows.tail(60), ADAPTER.features_schema)
    train.main()
    record_train_outputs(tmp_path)
    evaluate.main()
    return eval_files()


def eval_files() -> dict[str, bytes]:
    """The outputs in eval/, without evaluate's temporary directories."""
    return {
        path.relative_to(config.EVAL_DIR).as_posix(): path.read_bytes()
        for path in sorted(config.EVAL_DIR.rglob("*"))
        if path.is_file() and not path.relative_to(config.EVAL_DIR).parts[0].startswith(".live.")
    }


def half_then(action):
    """A stand-in for dvclive's JSON writer: write half the file, then `action()` (a crash)."""

    def dump_json(content, output_file, **kwargs):
        text = json.dumps(content, indent=4)
        Path(output_file).write_text(text[: len(text) // 2])
        action()

    return dump_json


@pytest.mark.slow
def test_a_failure_mid_write_leaves_the_old_outputs_or_none(tmp_path, monkeypatch):
    import dvclive.plots.custom

    def disk_full():
        raise OSError(28, "No space left on device")

    old = evaluated(tmp_path, monkeypatch)
    assert {"metrics.json", "plots/custom/roc.json"} <= set(old)
    monkeypatch.setattr(dvclive.plots.custom, "dump_json", half_then(disk_full))
    with pytest.raises(OSError, match="No space left"):
        evaluate.main()
    assert eval_files() == old  # every file the old one, byte for byte; nothing half-written
    assert not list(config.EVAL_DIR.glob(".live.*"))
    # With no earlier run there is nothing to keep: the outputs are absent, not partial.
    shutil.rmtree(config.EVAL_DIR)
    with pytest.raises(OSError, match="No space left"):
        evaluate.main()
    assert eval_files() == {}


# Runs evaluate on a tmp_path set up by `evaluated`, and kills itself with
# SIGKILL (no cleanup runs) halfway through dvclive's second plot file.
KILLED_EVALUATE = """
import json, os, signal, sys
from pathlib import Path
import dvclive.plots.custom
from src.pipeline import config, evaluate
from tests.template import test_model

root = Path(sys.argv[1])
for name in ("TEST_FEATURES", "MODEL", "MANIFEST", "EVAL_DIR", "METRICS", "PREDICTIONS", "DVC_LOCK"):
    setattr(config, name, root / getattr(config, name).relative_to(config.ROOT))
evaluate.load_params = test_model.quick_params
calls = []
def kill():
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
real = dvclive.plots.custom.dump_json
def dump_json(content, output_file, **kwargs):
    if len(calls) == 1:
        return test_model.half_then(kill)(content, output_file, **kwargs)
    calls.append(1)
    return real(content, output_file, **kwargs)
dvclive.plots.custom.dump_json = dump_json
evaluate.main()
"""


@pytest.mark.slow
def test_a_killed_evaluate_leaves_valid_outputs_and_the_next_run_removes_its_temporaries(tmp_path, monkeypatch):
    old = evaluated(tmp_path, monkeypatch)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_EVALUATE, str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert eval_files() == old
    for payload in old.values():
        json.loads(payload)  # what `dvc plots show` and `dvc metrics show` read is whole
    left = list(config.EVAL_DIR.glob(".live.*.tmp"))
    assert len(left) == 1  # the killed run's, with its half-written plot in it
    assert any(not _parses(path) for path in left[0].rglob("*.json"))
    evaluate.main()
    assert not list(config.EVAL_DIR.glob(".live.*")) and eval_files() == old


def _parses(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except ValueError:
        return False
    return True


# --- the predictions table ------------------------------------------------


def test_binary_predictions_frame_and_schema():
    classes = frames.classes(2)
    positive = np.array([0.2, 0.5, 0.9])
    frame = predictions.predictions_frame(
        "row_id", [3, 1, 2], np.column_stack([1 - positive, positive]), classes, threshold=0.5
    )
    assert list(frame.columns) == ["row_id", "probability", "label"]
    assert frame["label"].tolist() == [classes[0], classes[1], classes[1]]  # at the threshold: positive
    assert frame["row_id"].tolist() == [3, 1, 2] and np.array_equal(frame["probability"], positive)
    schema = predictions.predictions_schema("row_id", classes, ADAPTER.target_type)
    assert schema.names == ["row_id", "probability", "label"] and schema.field("label").type == ADAPTER.target_type


@pytest.mark.parametrize("classes, label_type", [([0, 1, 2], pa.int8()), (["x", "y", "z"], pa.string())])
def test_multiclass_predictions_frame_and_schema(classes, label_type):
    probabilities = np.array([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.1, 0.1, 0.8]])
    frame = predictions.predictions_frame("row_id", [1, 2, 3], probabilities, classes, threshold=0.5)
    assert list(frame.columns) == ["row_id", "label", *(f"probability_{c}" for c in classes)]
    assert frame["label"].tolist() == [classes[1], classes[0], classes[2]]  # ties to the first, as argmax
    assert np.array_equal(frame[[f"probability_{c}" for c in classes]].to_numpy(), probabilities)
    schema = predictions.predictions_schema("row_id", classes, label_type)
    assert schema.names == list(frame.columns) and schema.field("label").type == label_type
    assert pa.Table.from_pandas(frame, schema=schema, preserve_index=False).num_rows == 3


def test_training_refuses_a_numeric_feature_with_no_value():
    frame = pd.DataFrame({"a": [1.0, np.nan], "b": [np.nan, np.nan]})
    train.check_numeric(frame[["a"]], ("a",))
    with pytest.raises(ValueError, match=r"numeric features \['b'\] have no value in the training data"):
        train.check_numeric(frame, ("a", "b"))


def test_stacked_forests_predict_on_one_job_while_they_are_fitted():
    """Stacking calls its base estimators' predict_proba inside fit (the out-of-fold
    probabilities); a forest there on more jobs sums its trees in thread-finishing order.
    A single forest may fit on every core (its n_jobs is reset before pickling)."""
    params = frames.small_params("stacking")
    stacked_train = params.train.model_copy(
        update={
            "stacking": params.train.stacking.model_copy(
                update={"estimators": ["hist_gradient_boosting", "random_forest"]}
            )
        }
    )
    stacked = build_pipeline(stacked_train, params.categories, ADAPTER.numeric, params.seed, threads=4)
    forests = [
        step
        for _, base in stacked.named_steps["estimator"].estimators
        for _, step in base.steps
        if isinstance(step, RandomForestClassifier)
    ]
    assert forests and all(forest.n_jobs == 1 for forest in forests)
    single = build_pipeline(
        params.train.model_copy(update={"model": "random_forest"}),
        params.categories,
        ADAPTER.numeric,
        params.seed,
        threads=4,
    )
    assert single.named_steps["estimator"].n_jobs == 4
