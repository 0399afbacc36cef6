"""A float target is a regression: its task, models, recorded lists, metrics, predictions, plots and service.

On tiny frames of the active adapter's features with its target made a float
(frames.regression), so these pass for any adapter.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sklearn import metrics
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor, StackingRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold
from sklearn.neural_network import MLPRegressor
from threadpoolctl import threadpool_limits

from src.pipeline import config, crossval, evaluate, files, predictions, scoring, train
from src.pipeline.adapter import CLASSIFICATION, REGRESSION, task_of
from src.pipeline.dataset import check_classes, check_recorded
from src.pipeline.featurize import featurize, is_test
from src.pipeline.model import build_pipeline, normalise_threads, ridge_alpha, thread_limits
from src.pipeline.params import ParamsError
from src.serving import predict, serve
from src.tools import categories, exps
from tests.conftest import ROOT
from tests.template import frames
from tests.template.test_model import MODELS, assert_declared_plots_written, record_train_outputs, stage_in_tmp
from tests.template.test_predict import tiny_deployed
from tests.template.test_serve import as_json_rows

REGRESSOR = frames.regression()


def test_the_task_follows_from_the_target_type():
    assert task_of(pa.float64()) == task_of(pa.float32()) == REGRESSION
    assert task_of(pa.int8()) == task_of(pa.int64()) == task_of(pa.string()) == CLASSIFICATION
    with pytest.raises(ValueError, match="float .regression., integer or string .classification."):
        task_of(pa.bool_())
    REGRESSOR.check()  # a float target is a valid declaration
    assert REGRESSOR.task == REGRESSION and frames.ADAPTER.task == task_of(frames.ADAPTER.target_type)


EXPECTED = {
    "hist_gradient_boosting": HistGradientBoostingRegressor,
    "logistic_regression": Ridge,
    "random_forest": RandomForestRegressor,
    "mlp": MLPRegressor,
    "stacking": StackingRegressor,
}


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_every_family_has_its_regressor_seeded_and_thread_invariant(model):
    params = frames.small_params(model, adapter=REGRESSOR)
    rows = frames.features(160, adapter=REGRESSOR)
    X, y = rows[list(REGRESSOR.features)], rows[REGRESSOR.target]
    written = {}
    for threads in (1, 2):
        pipeline = build_pipeline(
            params.train, params.categories, REGRESSOR.numeric, params.seed, threads, task=REGRESSION
        )
        with threadpool_limits(limits=thread_limits(threads)):
            pipeline.fit(X, y)
        written[threads] = pickle.dumps(normalise_threads(pipeline), protocol=5)
    assert written[1] == written[2]
    estimator = pipeline.named_steps["estimator"]
    assert type(estimator) is EXPECTED[model]
    if model == "stacking":
        assert isinstance(estimator.final_estimator_, Ridge) and isinstance(estimator.cv, KFold)
    if model == "logistic_regression":
        assert estimator.alpha == ridge_alpha(params.train.logistic_regression.C) == 1 / (2 * 1.0)
    predicted = pipeline.predict(X)
    assert predicted.shape == (len(rows),) and np.isfinite(predicted).all()
    # Something learned: better than predicting the mean (a tiny MLP on 160 rows is the weakest).
    assert metrics.r2_score(y, predicted) > (0.0 if model == "mlp" else 0.3)


def test_classes_recorded_for_a_regression_are_refused_with_the_fix():
    params = frames.small_params(adapter=REGRESSOR)
    assert params.classes == []
    check_recorded(params, REGRESSOR)
    with pytest.raises(ParamsError, match=r"a regression, which has no classes: set `classes: \[\]`"):
        check_recorded(params.model_copy(update={"classes": [0, 1]}), REGRESSOR)
    target = frames.features(20, adapter=REGRESSOR)[REGRESSOR.target]
    check_classes(target, [], REGRESSION)
    with pytest.raises(ParamsError, match="recorded for a regression target"):
        check_classes(target, [0, 1], REGRESSION)


def test_a_regression_target_with_gaps_or_infinities_is_refused_naming_the_count():
    target = frames.features(20, adapter=REGRESSOR)[REGRESSOR.target].copy()
    target.iloc[[2, 5]] = np.nan
    target.iloc[7] = np.inf
    with pytest.raises(ValueError, match=r"has 2 missing \(NaN\) values, 1 infinite values of 20 rows"):
        check_classes(target, [], REGRESSION)


def test_make_categories_records_no_classes_for_a_regression():
    rows = frames.features(30, adapter=REGRESSOR)
    assert categories.distinct_classes(rows, REGRESSOR.target, REGRESSOR.task) == []
    assert categories.distinct_categories(rows, REGRESSOR.categorical) == {
        name: sorted(rows[name].dropna().unique()) for name in REGRESSOR.categorical
    }


def test_featurize_summarises_a_regression_target_by_its_range():
    snapshot = frames.snapshot_table(80).to_pandas()
    adapter = frames.with_derive(frames.stub_derive(adapter=REGRESSOR), REGRESSOR)
    train_rows, _, summary = featurize(snapshot, adapter, frames.ADAPTER_PARAMS, 20, 1)
    target = train_rows[REGRESSOR.target]
    assert summary["train_target_range"] == [target.min(), target.max()]
    assert "train_class_rows" not in summary and "train_positive_rate" not in summary


def test_regression_scores_are_sklearns():
    rng = np.random.default_rng(1)
    actual = rng.normal(50, 10, 200)
    predicted = actual + rng.normal(0, 3, 200)
    got = scoring.scores(actual, predicted, [], 0.5, REGRESSION)
    assert list(got) == list(scoring.REGRESSION_METRICS) == ["rmse", "mae", "r2", "median_absolute_error"]
    assert got["rmse"] == round(float(np.sqrt(np.mean((actual - predicted) ** 2))), 12)
    assert got["mae"] == round(metrics.mean_absolute_error(actual, predicted), 12)
    assert got["r2"] == round(metrics.r2_score(actual, predicted), 12)
    assert got["median_absolute_error"] == round(float(np.median(np.abs(actual - predicted))), 12)


def test_the_validation_estimate_of_a_regression_is_seeded_k_fold():
    params = frames.small_params("logistic_regression", adapter=REGRESSOR)
    rows = frames.features(120, adapter=REGRESSOR)
    X, y = rows[list(REGRESSOR.features)], rows[REGRESSOR.target]
    assert isinstance(crossval.splitter(y, [], 3, params.seed, REGRESSION), KFold)
    model = build_pipeline(params.train, params.categories, REGRESSOR.numeric, params.seed, task=REGRESSION)
    runs = [
        crossval.summarise(crossval.cross_validate(model, X, y, [], 3, params.seed, 0.5, 1, REGRESSION), len(X))
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    assert set(scoring.REGRESSION_METRICS) <= set(runs[0]) and runs[0]["folds"] == 3
    assert runs[0]["rmse"]["mean"] > 0 and runs[0]["rmse"]["std"] >= 0
    with pytest.raises(ValueError, match="only 2 training rows"):
        crossval.splitter(y.iloc[:2], [], 3, params.seed, REGRESSION)


def test_regression_predictions_are_id_and_value():
    schema = predictions.predictions_schema("key", [], pa.float64())
    assert schema == pa.schema([("key", pa.int64()), ("prediction", pa.float64())])
    frame = predictions.predictions_frame("key", [3, 1], np.array([1.5, -2.25]), [], 0.5, REGRESSION)
    assert frame.to_dict(orient="list") == {"key": [3, 1], "prediction": [1.5, -2.25]}


def test_make_exps_ranks_losses_ascending_and_scores_descending():
    metrics_file = {"rmse": 3.0, "mae": 2.0, "r2": 0.8, "median_absolute_error": 1.5, "rows": {"test": 10}}
    headline = exps.headline_metrics(metrics_file)
    assert headline == ["rmse", "mae", "r2", "median_absolute_error"]
    assert exps.validation_metric(headline, {"rmse": {"mean": 3.1, "std": 0.1}}) == "rmse"
    assert [exps.sort_order(name) for name in headline] == ["asc", "asc", "desc", "asc"]


@pytest.mark.slow
def test_train_and_evaluate_stages_write_a_regressions_outputs(tmp_path, monkeypatch):
    params = frames.small_params("hist_gradient_boosting", adapter=REGRESSOR)
    stage_in_tmp(tmp_path, monkeypatch, params)
    for stage in (train, evaluate):
        monkeypatch.setattr(stage, "load_adapter", lambda _params: (REGRESSOR, frames.ADAPTER_PARAMS))
    rows = frames.features(240, adapter=REGRESSOR)
    held_out = is_test(rows[REGRESSOR.id], 25, params.seed)
    files.write_frame(config.TRAIN_FEATURES, rows[~held_out], REGRESSOR.features_schema)
    test_rows = rows[held_out].reset_index(drop=True)
    files.write_frame(config.TEST_FEATURES, test_rows, REGRESSOR.features_schema)

    train.main()
    record_train_outputs(tmp_path)
    evaluate.main()

    assert pq.read_schema(config.PREDICTIONS).remove_metadata() == pa.schema(
        [(REGRESSOR.id, pa.int64()), ("prediction", pa.float64())]
    )
    written = pd.read_parquet(config.PREDICTIONS)
    assert written[REGRESSOR.id].tolist() == test_rows[REGRESSOR.id].tolist()
    scores = json.loads(config.METRICS.read_text())
    actual = test_rows[REGRESSOR.target].to_numpy()
    assert scores["rmse"] == round(metrics.root_mean_squared_error(actual, written["prediction"]), 12)
    assert scores["rows"]["test"] == len(test_rows) and "rows/positive" not in json.dumps(scores)
    validation = json.loads(config.VALIDATION_METRICS.read_text())
    assert {name: set(validation[name]) for name in scoring.REGRESSION_METRICS} == {
        name: {"mean", "std"} for name in scoring.REGRESSION_METRICS
    }
    manifest = json.loads(config.MANIFEST.read_text())
    assert manifest["classes"] == [] and manifest["target_type"] == "double"
    assert_declared_plots_written(ROOT, tmp_path, REGRESSION)
    points = json.loads((tmp_path / "eval/plots/custom/predicted_actual.json").read_text())
    assert len(points) == len(test_rows) and set(points[0]) == {"actual", "predicted"}

    # Classes given for a regression: train stops, naming the fix.
    monkeypatch.setattr(train, "load_params", lambda: params.model_copy(update={"classes": [0, 1]}))
    with pytest.raises(ParamsError, match="which has no classes"):
        train.main()


def test_the_service_and_the_batch_command_return_the_predicted_value(tmp_path):
    deployed, rows = tiny_deployed(tmp_path, 0, "random_forest", target_type=pa.float64())
    assert deployed.task == REGRESSION and deployed.classes == []
    result = deployed.predict(rows)
    expected = deployed.model.predict(rows[list(REGRESSOR.features)])
    assert list(result.predictions.columns) == [REGRESSOR.id, "prediction"]
    assert result.predictions["prediction"].tolist() == expected.tolist()
    for name in ("batch.csv", "batch.parquet"):  # the batch command's writer, with the deployed schema
        predict.write_predictions(tmp_path / name, result.predictions, deployed.schema)
        back = pd.read_csv(tmp_path / name) if name.endswith(".csv") else pd.read_parquet(tmp_path / name)
        assert back["prediction"].tolist() == expected.tolist()
    client = TestClient(serve.create_app(deployed))
    response = client.post("/predict", json={"rows": as_json_rows(rows.drop(columns=REGRESSOR.target))})
    assert response.status_code == 200, response.text
    got = response.json()["predictions"]
    assert got == [
        {REGRESSOR.id: int(row_id), "prediction": value}  # exact through JSON
        for row_id, value in zip(rows[REGRESSOR.id], expected.tolist(), strict=True)
    ]
    row_schema = client.get("/openapi.json").json()["components"]["schemas"]["RowPrediction"]
    assert set(row_schema["properties"]) == {REGRESSOR.id, "prediction"}
