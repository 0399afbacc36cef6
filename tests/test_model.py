"""The pipeline on tiny frames: unknown bucket, every model choice, the manifest's learned state."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from src.datasets import flights as dataset
from src.pipeline.model import UnknownBucket, build_pipeline, count_unknown, fitted_state, structure
from src.pipeline.params import load_params

CATEGORIES = {"carrier": ["AA", "UA"], "origin": ["EWR", "JFK"], "dest": ["LAX", "SFO"], "manufacturer": ["BOEING"]}


def tiny_frame(n: int = 80, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "carrier": rng.choice(["AA", "UA"], n), "origin": rng.choice(["EWR", "JFK"], n),
        "dest": rng.choice(["LAX", "SFO"], n), "manufacturer": rng.choice(["BOEING", None], n),
        **{name: rng.normal(size=n) for name in dataset.NUMERIC},
    })
    frame.loc[::7, "temp"] = np.nan
    target = pd.Series((frame["sched_dep_hour"] + (frame["carrier"] == "AA") > 0.5).astype(int))
    return frame[list(dataset.FEATURES)], target


def train_params(model: str, **changes):
    params = load_params()
    train = params.train.model_copy(update={"model": model, **changes})
    small = {
        "hist_gradient_boosting": train.hist_gradient_boosting.model_copy(update={"max_iter": 5}),
        "random_forest": train.random_forest.model_copy(update={"n_estimators": 5}),
        "stacking": train.stacking.model_copy(update={"cv_folds": 2}),
    }
    return train.model_copy(update=small)


def test_unknown_bucket_maps_unseen_and_missing():
    frame = pd.DataFrame({"carrier": ["AA", "ZZ", None], "origin": ["JFK"] * 3, "dest": ["LAX"] * 3,
                          "manufacturer": ["BOEING", "BOEING", "AIRBUS"]})
    out = UnknownBucket(CATEGORIES).fit_transform(frame)
    assert out["carrier"].tolist() == ["AA", dataset.UNKNOWN, dataset.UNKNOWN]
    assert out["manufacturer"].tolist() == ["BOEING", "BOEING", dataset.UNKNOWN]
    counts = count_unknown(frame, CATEGORIES)
    assert counts["carrier"] == {"unknown": 1, "missing": 1}
    assert counts["manufacturer"] == {"unknown": 1, "missing": 0}
    assert counts["origin"] == {"unknown": 0, "missing": 0}


@pytest.mark.parametrize("model", ["hist_gradient_boosting", "logistic_regression", "random_forest", "stacking"])
def test_every_model_fits_predicts_unknowns_and_is_deterministic(model):
    X, y = tiny_frame()
    train = train_params(model)
    first = build_pipeline(train, CATEGORIES, seed=3).fit(X, y)
    second = build_pipeline(train, CATEGORIES, seed=3).fit(X, y)
    assert pickle.dumps(first, protocol=5) == pickle.dumps(second, protocol=5)
    unseen = X.head(3).assign(carrier=["XX", None, "AA"], dest="NOWHERE")
    probability = first.predict_proba(unseen)[:, 1]
    assert probability.shape == (3,) and np.isfinite(probability).all()
    state = fitted_state(first)
    imputed = [value for key, value in state.items() if key.endswith("impute_values")]
    assert imputed and all("temp" in values for values in imputed)
    assert np.isclose(imputed[0]["temp"], X["temp"].median())
    if model in ("logistic_regression", "stacking"):
        ranges = [value for key, value in state.items() if key.endswith("ranges")]
        assert ranges and ranges[0]["distance"] == [X["distance"].min(), X["distance"].max()]


def test_stacking_structure_is_declared():
    described = structure(train_params("stacking"))
    assert described["estimator"] == "stacking"
    assert [b["estimator"] for b in described["base_estimators"]] == ["hist_gradient_boosting", "logistic_regression"]
    assert described["final_estimator"]["estimator"] == "logistic_regression"


def test_empty_category_list_is_refused():
    with pytest.raises(ValueError, match="make categories"):
        build_pipeline(train_params("logistic_regression"), {**CATEGORIES, "dest": []}, seed=1)
