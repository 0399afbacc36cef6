"""The compiled small-batch path (src/serving/compiled.py) gives scikit-learn's bytes, or is not used.

Tiny models cover every task of the one compiled family (two and three
classes, a regression), the families that are not compiled, a compiled
pipeline that differs (refused), and the service's validated rows against
the contract's own check. The `slow` test runs every test row of the model the
real pipeline built through the compiled path, against the evaluate stage's file.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest

from src.pipeline import artifact
from src.pipeline.model import count_unknown
from src.pipeline.predictions import model_outputs
from src.serving import compiled, predict
from src.serving.compiled import SMALL_BATCH
from tests.template import frames
from tests.template.frames import ADAPTER, UNSEEN
from tests.template.test_predict import SAVED_PREDICTIONS, TEST_FEATURES, load


def deployed_tiny(tmp_path, model: str, n_classes: int = 2, adapter=ADAPTER) -> predict.Deployed:
    model_path, manifest_path, _ = frames.save(tmp_path, model, n_classes, adapter=adapter)
    loaded, manifest = artifact.load_model(model_path, manifest_path)
    return predict.Deployed(loaded, manifest, frames.PARAMS.evaluate.threshold, threads=1)


def odd_rows(adapter=ADAPTER, rows: int = 40) -> pd.DataFrame:
    """Tiny rows with unknown and missing categories and missing numbers mixed in."""
    frame = frames.features(rows, seed=7, adapter=adapter)[list(adapter.features)].copy()
    for position, name in enumerate(adapter.categorical):
        frame[name] = frame[name].astype(object)
        frame.loc[position % rows, name] = UNSEEN
        frame.loc[(position + 3) % rows, name] = None
    for position, name in enumerate(adapter.numeric):
        frame.loc[(position + 5) % rows, name] = np.nan
    return frame


def same_bits(left: np.ndarray, right: np.ndarray) -> bool:
    return left.dtype == right.dtype and left.shape == right.shape and left.tobytes() == right.tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["2 classes", "3 classes", "regression"])
def test_the_compiled_pipeline_gives_scikit_learns_bytes_row_by_row_and_batched(tmp_path, task):
    adapter = frames.regression() if task == "regression" else ADAPTER
    deployed = deployed_tiny(tmp_path, "hist_gradient_boosting", 3 if task == "3 classes" else 2, adapter)
    assert deployed.compiled is not None
    rows = odd_rows(adapter)
    checked = deployed.contract.check(rows)
    expected = model_outputs(deployed.model, checked.features, deployed.task)
    assert same_bits(deployed.compiled.outputs(checked.columns), expected)
    for index in range(len(rows)):
        one = deployed.contract.check(rows.iloc[[index]])
        assert same_bits(deployed.compiled.outputs(one.columns), expected[index : index + 1]), index
    # Through Deployed.predict, a small batch (compiled) and a large one (scikit-learn) agree row for row.
    large = pd.concat([rows] * (SMALL_BATCH // len(rows) + 1), ignore_index=True)
    assert len(large) > SMALL_BATCH
    # The one rule for which batches it answers, read by predict_checked and the service.
    assert deployed.compiled_for(1) is deployed.compiled and deployed.compiled_for(SMALL_BATCH) is deployed.compiled
    assert deployed.compiled_for(SMALL_BATCH + 1) is None and deployed.compiled_for(len(large)) is None
    small_result = deployed.predict(rows)
    large_result = deployed.predict(large)
    assert same_bits(large_result.probabilities[: len(rows)], small_result.probabilities)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["logistic_regression", "random_forest", "mlp"])
def test_other_families_are_not_compiled_and_still_predict(tmp_path, model, caplog):
    with caplog.at_level(logging.INFO, logger=compiled.__name__):
        deployed = deployed_tiny(tmp_path, model)
    assert deployed.compiled is None and deployed.compiled_for(1) is None
    assert "not a HistGradientBoosting one" in caplog.text
    rows = odd_rows()
    result = deployed.predict(rows)
    checked = deployed.contract.check(rows)
    assert same_bits(result.probabilities, model_outputs(deployed.model, checked.features, deployed.task))


@pytest.mark.slow
def test_a_compiled_pipeline_that_differs_is_refused_and_scikit_learn_answers(tmp_path, monkeypatch, caplog):
    real = compiled._compile

    def off_by_a_little(*args, **kwargs):
        result = real(*args, **kwargs)
        return dataclasses.replace(result, baseline=result.baseline + 1e-9)

    monkeypatch.setattr(compiled, "_compile", off_by_a_little)
    with caplog.at_level(logging.WARNING, logger=compiled.__name__):
        deployed = deployed_tiny(tmp_path, "hist_gradient_boosting")
    assert deployed.compiled is None
    assert "differed from it on" in caplog.text and "probe rows" in caplog.text
    rows = odd_rows()
    checked = deployed.contract.check(rows)
    assert same_bits(
        deployed.predict(rows).probabilities, model_outputs(deployed.model, checked.features, deployed.task)
    )


def test_the_probes_reach_every_recorded_category_an_unknown_and_a_gap(tmp_path):
    contract = deployed_tiny(tmp_path, "hist_gradient_boosting").contract
    probes = compiled.probe_rows(contract.categories, contract.numeric, contract.ranges, contract.example())
    for name, values in contract.categories.items():
        seen = set(probes[name].dropna())
        assert set(values) <= seen and compiled.UNSEEN in seen and probes[name].isna().any()
    for name in contract.numeric:
        assert probes[name].isna().any()


@pytest.mark.slow
def test_the_services_validated_rows_are_the_contracts_checked_rows(tmp_path):
    deployed = deployed_tiny(tmp_path, "hist_gradient_boosting")
    contract = deployed.contract
    rows = odd_rows()
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    records[0]["not_a_feature"] = 1
    Row = contract.row_model()
    validated = contract.validated([Row.model_validate(record) for record in records])
    checked = contract.check(pd.DataFrame(records))
    assert validated.unknown_categories == checked.unknown_categories
    assert validated.ignored_columns == checked.ignored_columns == ["not_a_feature"]
    pd.testing.assert_frame_equal(
        validated.features.astype(checked.features.dtypes), checked.features, check_exact=True
    )
    assert same_bits(deployed.predict_checked(validated).probabilities, deployed.predict_checked(checked).probabilities)


@pytest.mark.long
def test_every_test_row_through_the_compiled_path_is_the_evaluate_stages_bytes(reproduced):
    deployed = load(reproduced)
    assert deployed.compiled is not None, "the example's model is a HistGradientBoosting one"
    rows = pd.read_parquet(reproduced / TEST_FEATURES)
    saved = pd.read_parquet(reproduced / SAVED_PREDICTIONS)
    parts = [
        deployed.predict(rows.iloc[start : start + SMALL_BATCH]).predictions
        for start in range(0, len(rows), SMALL_BATCH)
    ]
    assert_same_predictions(pd.concat(parts, ignore_index=True), saved)
    # One row at a time, as the service gets most requests: a spread of 300 rows.
    picks = np.unique(np.linspace(0, len(rows) - 1, 300).astype(int))
    one_by_one = [deployed.predict(rows.iloc[[index]]).predictions for index in picks]
    assert_same_predictions(pd.concat(one_by_one, ignore_index=True), saved.iloc[picks].reset_index(drop=True))


def assert_same_predictions(got: pd.DataFrame, saved: pd.DataFrame) -> None:
    assert list(got.columns) == list(saved.columns)
    for column in saved.columns:
        left, right = got[column].to_numpy(), saved[column].to_numpy()
        if left.dtype.kind == "f":
            assert same_bits(left, right), column
        else:
            assert left.tolist() == right.tolist(), column


def test_a_pipeline_whose_internals_differ_is_served_by_scikit_learn(tmp_path, monkeypatch, caplog):
    def other_internals(*args, **kwargs):
        raise AttributeError("'HistGradientBoostingClassifier' object has no attribute '_predictors'")

    monkeypatch.setattr(compiled, "_compile", other_internals)
    with caplog.at_level(logging.WARNING, logger=compiled.__name__):
        deployed = deployed_tiny(tmp_path, "hist_gradient_boosting")
    assert deployed.compiled is None
    assert "did not compile (AttributeError: " in caplog.text
    rows = odd_rows()
    assert deployed.predict(rows).predictions.shape[0] == len(rows)


@pytest.mark.slow
@pytest.mark.parametrize("rows", [40, 400])
def test_unknown_counts_follow_the_pipelines_rule_at_any_size(tmp_path, rows):
    contract = deployed_tiny(tmp_path, "hist_gradient_boosting").contract
    frame = odd_rows(rows=rows)
    assert contract.check(frame).unknown_categories == count_unknown(frame, contract.categories)
    assert any(counts["unknown"] and counts["missing"] for counts in count_unknown(frame, contract.categories).values())
