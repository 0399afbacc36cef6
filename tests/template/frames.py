"""Tiny frames (and a tiny model) from the active adapter's declarations, for the template tests.

Template tests never name a data set's columns: they read the adapter that
params.yaml names and build rows from what it declares (`features_schema`,
`categorical`, `numeric`, `feature_ranges`, `snapshot_schema`, `target_type`).
So they pass for any adapter, and a fork keeps them. Every value is seeded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa

from src.pipeline import artifact
from src.pipeline.adapter import REGRESSION, Adapter
from src.pipeline.dataset import load_adapter
from src.pipeline.model import build_pipeline, count_unknown, normalise_threads
from src.pipeline.params import Params, load_params
from src.pipeline.train import build_manifest

PARAMS = load_params()
ADAPTER, ADAPTER_PARAMS = load_adapter(PARAMS)
# Every categorical column's recorded values in tiny frames.
LEVELS = ["a", "b", "c"]
# Far from any other tiny value: a value no list records.
UNSEEN = "zz_unseen"


def regression(adapter: Adapter = ADAPTER) -> Adapter:
    """The adapter with a float target: the same features, a regression (Adapter.task)."""
    return dataclasses.replace(adapter, target_type=pa.float64())


def classes(count: int, adapter: Adapter = ADAPTER) -> list:
    """`count` sorted labels of the adapter's target type: 0, 1, ... or text; none for a regression."""
    if adapter.task == REGRESSION:
        return []
    if pa.types.is_string(adapter.target_type):
        return [f"class_{chr(ord('a') + index)}" for index in range(count)]
    return list(range(count))


def categories(adapter: Adapter = ADAPTER) -> dict[str, list[str]]:
    """Recorded lists for tiny frames: LEVELS for every categorical column, in the adapter's order."""
    return {name: list(LEVELS) for name in adapter.categorical}


def numeric_values(rng: np.random.Generator, count: int, bounds: tuple[float | None, float | None]) -> np.ndarray:
    """Numbers inside a feature's declared range (open ends get a spread of 10)."""
    low, high = bounds
    if low is not None and high is not None:
        return rng.uniform(low, high, count)
    if low is not None:
        return low + rng.exponential(10.0, count)
    if high is not None:
        return high - rng.exponential(10.0, count)
    return rng.normal(0.0, 10.0, count)


def features(rows: int = 120, n_classes: int = 2, seed: int = 0, adapter: Adapter = ADAPTER) -> pd.DataFrame:
    """Feature rows [id, *categorical, *numeric, target], typed as `adapter.features_schema`.

    The target follows the first numeric and the first categorical column (so
    a model has something to learn), every class occurs, and the last
    categorical and last numeric columns have gaps (missing values are legal
    model input: the unknown bucket and the imputer take them).
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({adapter.id: np.arange(1, rows + 1, dtype=np.int64) * 7})
    for name in adapter.categorical:
        frame[name] = pd.Series(rng.choice(LEVELS, rows), dtype=object)
    for name in adapter.numeric:
        frame[name] = numeric_values(rng, rows, adapter.feature_ranges.get(name, (None, None)))
    score = rng.normal(0.0, 0.3, rows)
    if adapter.numeric:
        score += frame[adapter.numeric[0]].rank(pct=True).to_numpy() * 3
    if adapter.categorical:
        score += (frame[adapter.categorical[0]] == LEVELS[0]).to_numpy()
        frame.loc[frame.index % 11 == 5, adapter.categorical[-1]] = None
    if adapter.numeric:
        frame.loc[frame.index % 7 == 3, adapter.numeric[-1]] = np.nan
    if adapter.task == REGRESSION:  # the score itself is the number to predict
        frame[adapter.target] = pd.Series(score * 10.0 + 50.0).astype(adapter.target_type.to_pandas_dtype())
        return frame[adapter.features_schema.names]
    bins = pd.qcut(score, n_classes, labels=False) if rows else np.zeros(0, dtype=int)
    labels = np.asarray(classes(n_classes, adapter), dtype=object)[bins]
    frame[adapter.target] = pd.Series(labels).astype(adapter.target_type.to_pandas_dtype())
    return frame[adapter.features_schema.names]


def snapshot_table(rows: int = 60, seed: int = 0, adapter: Adapter = ADAPTER) -> pa.Table:
    """A snapshot as gather writes it: `adapter.snapshot_schema`, ids unique and ascending."""
    rng = np.random.default_rng(seed)
    arrays = []
    for field in adapter.snapshot_schema:
        kind = field.type
        if field.name == adapter.id:
            values = np.arange(1, rows + 1, dtype=np.int64) * 3
        elif pa.types.is_integer(kind):
            values = rng.integers(0, 100, rows)
        elif pa.types.is_floating(kind):
            values = rng.normal(0.0, 10.0, rows)
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            values = rng.choice(LEVELS, rows).tolist()
        elif pa.types.is_boolean(kind):
            values = rng.random(rows) < 0.5
        elif pa.types.is_timestamp(kind):
            start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
            values = [start + dt.timedelta(hours=int(hours)) for hours in rng.integers(0, 24 * 365, rows)]
        elif pa.types.is_date(kind):
            values = [dt.date(2020, 1, 1) + dt.timedelta(days=int(days)) for days in rng.integers(0, 365, rows)]
        else:
            raise NotImplementedError(f"tests/template/frames.py: no tiny values for {field.name}'s type {kind}")
        arrays.append(pa.array(values).cast(kind))
    return pa.Table.from_arrays(arrays, schema=adapter.snapshot_schema)


def stub_derive(excluded_every: int = 4, n_classes: int = 2, adapter: Adapter = ADAPTER):
    """A derive_features that keeps every snapshot id not divisible by `excluded_every`.

    For the generic featurize tests (the real derivation is the example's
    business): its rows are `features()` carrying the kept snapshot ids, in id
    order as the adapter contract asks, and it counts the others as excluded.
    """

    def derive(snapshot: pd.DataFrame, _params) -> tuple[pd.DataFrame, dict[str, int]]:
        ids = snapshot[adapter.id].to_numpy()
        kept = np.sort(ids[ids % excluded_every != 0])
        rows = features(len(kept), n_classes=n_classes, adapter=adapter)
        rows[adapter.id] = kept
        return rows, {"excluded_no_target": int(len(ids) - len(kept))}

    return derive


def with_derive(derive, adapter: Adapter = ADAPTER) -> Adapter:
    return dataclasses.replace(adapter, derive_features=derive)


def small_params(
    model: str = "hist_gradient_boosting", n_classes: int = 2, adapter: Adapter = ADAPTER, params: Params = PARAMS
) -> Params:
    """The committed params with `model` chosen, tiny lists and classes, and fast estimators."""
    train = params.train
    train = train.model_copy(
        update={
            "model": model,
            "hist_gradient_boosting": train.hist_gradient_boosting.model_copy(update={"max_iter": 5}),
            "random_forest": train.random_forest.model_copy(update={"n_estimators": 5}),
            "mlp": train.mlp.model_copy(
                update={
                    "hidden_layer_sizes": [8],
                    "batch_size": 16,
                    "max_iter": 60,
                    "learning_rate_init": 0.01,
                    "early_stopping": False,
                }
            ),
            "stacking": train.stacking.model_copy(update={"cv_folds": 2}),
            # One shuffle per feature when a test turns selection on: a tiny frame's ranking needs no more.
            "feature_selection": train.feature_selection.model_copy(update={"repeats": 1}),
            "cv_folds": 2,
        }
    )
    return params.model_copy(
        update={"train": train, "categories": categories(adapter), "classes": classes(n_classes, adapter)}
    )


def fit(
    model: str = "hist_gradient_boosting",
    n_classes: int = 2,
    rows: int = 120,
    seed: int = 0,
    adapter: Adapter = ADAPTER,
    params: Params | None = None,
):
    """(fitted pipeline, params, training frame) on tiny rows, as the train stage fits; `params` overrides."""
    params = params or small_params(model, n_classes, adapter)
    frame = features(rows, n_classes, seed, adapter)
    pipeline = build_pipeline(params.train, params.categories, adapter.numeric, params.seed, task=adapter.task)
    pipeline.fit(frame[list(adapter.features)], frame[adapter.target])
    return pipeline, params, frame


def save(
    directory,
    model: str = "hist_gradient_boosting",
    n_classes: int = 2,
    adapter: Adapter = ADAPTER,
    params: Params | None = None,
):
    """A tiny model saved as the train stage saves it, with its manifest: (model path, manifest path, manifest)."""
    import json

    pipeline, params, frame = fit(model, n_classes, adapter=adapter, params=params)
    model_path, manifest_path = directory / "model.pkl", directory / "manifest.json"
    sha256 = artifact.save_model(normalise_threads(pipeline), model_path)
    manifest = build_manifest(
        params,
        adapter,
        pipeline,
        sha256,
        hashlib.sha256(frame.to_csv().encode()).hexdigest(),
        len(frame),
        count_unknown(frame[list(adapter.features)], params.categories),
    )
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return model_path, manifest_path, manifest
