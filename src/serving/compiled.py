"""The fitted pipeline's outputs for a few rows, without scikit-learn's per-call overhead.

One row through the pickled Pipeline costs 15-20 ms on two cores, nearly all
of it per-call validation in pandas and scikit-learn; the arithmetic itself is
microseconds (../shared/PERFORMANCE.md's "serving's floor"). For the default
family, HistGradientBoosting behind the unknown bucket, the ordinal codes and
the imputer, `compile` reads the fitted steps once:

- each categorical column becomes one lookup, value -> the code the boosting
  sees, found by passing every recorded value (and one unknown) through the
  fitted steps themselves, so the bucket, both ordinal encoders and the order
  of the columns are scikit-learn's own;
- each numeric column is the caller's float64 value, or the imputer's learned
  value where it is missing, as SimpleImputer fills it;
- the trees are scored by the Cython function scikit-learn's own predict
  calls (`_predict_from_raw_data`), one tree after another, summed into the
  baseline in scikit-learn's order; the loss's own link turns the sums into
  probabilities (or a regression's values).

A compiled pipeline is used only once `compile` has checked it against the
Pipeline, byte for byte, on probe rows built from the contract: every recorded
category, an unknown and a missing one, and each numeric feature missing, at its
range's ends and at random inside it. Any other pipeline (another family,
feature selection, a library whose internals differ), or any difference, keeps
scikit-learn's path, and the service says which one it took. Batches above
SMALL_BATCH rows take scikit-learn's path too, where its vectorised code is
as fast. tests/template/test_compiled.py proves the evaluate stage's bytes on
every test row.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from src.pipeline.adapter import REGRESSION
from src.pipeline.model import UnknownBucket
from src.pipeline.predictions import model_outputs

# Rows per call at most: above it scikit-learn's path is as fast, and its
# thread pool is worth the setup.
SMALL_BATCH = 64
# Random probe rows on top of the systematic ones (every category, missing values, range ends).
RANDOM_PROBES = 256
PROBE_SEED = 0
# A category no recorded list holds: the unknown bucket's probe.
UNSEEN = "\x00an unseen category"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Compiled:
    """A verified HistGradientBoosting pipeline, for a few rows at a time."""

    codes: tuple[tuple[str, dict[str, float], float], ...]  # (column, value -> code, any other value's code)
    imputed: tuple[tuple[str, float], ...]  # (numeric column, its value where missing)
    trees: tuple[tuple[tuple[np.ndarray, np.ndarray], ...], ...]  # per iteration, per output: (nodes, cat bitsets)
    baseline: np.ndarray
    known_categories: np.ndarray
    feature_map: np.ndarray
    loss: Any
    task: str

    def matrix(self, features: Mapping[str, pd.Series | np.ndarray]) -> np.ndarray:
        """What the boosting's trees read: codes, then numeric values (imputed), as float64 rows.

        `features` holds each feature's column (a frame, or Checked.columns).
        """
        rows = len(features[self.codes[0][0] if self.codes else self.imputed[0][0]])
        matrix = np.empty((rows, len(self.codes) + len(self.imputed)), dtype=np.float64)
        for position, (name, lookup, other) in enumerate(self.codes):
            matrix[:, position] = [lookup.get(value, other) if isinstance(value, str) else other
                                   for value in features[name].tolist()]
        for position, (name, value) in enumerate(self.imputed, start=len(self.codes)):
            column = np.asarray(features[name], dtype=np.float64)
            matrix[:, position] = np.where(np.isnan(column), value, column)
        return matrix

    def outputs(self, features: Mapping[str, pd.Series | np.ndarray]) -> np.ndarray:
        """model_outputs' bytes: predict_proba's (rows x classes), or a regression's values (rows)."""
        from sklearn.ensemble._hist_gradient_boosting._predictor import _predict_from_raw_data

        matrix = self.matrix(features)
        rows, outputs = len(matrix), len(self.baseline)
        # Per output, the baseline and then each iteration's tree: summed left to
        # right by cumsum, as scikit-learn's `raw += tree` does, one tree at a time.
        terms = np.empty((outputs, len(self.trees) + 1, rows), dtype=np.float64)
        terms[:, 0, :] = (np.zeros((rows, outputs), dtype=self.baseline.dtype) + self.baseline).T
        for step, iteration in enumerate(self.trees, start=1):
            for output, (nodes, bitsets) in enumerate(iteration):
                _predict_from_raw_data(nodes, matrix, bitsets, self.known_categories, self.feature_map, 1,
                                       terms[output, step])
        raw = np.asfortranarray(np.cumsum(terms, axis=1)[:, -1, :].T)
        if self.task == REGRESSION:
            return np.asarray(self.loss.link.inverse(raw.ravel()), dtype=np.float64)
        return self.loss.predict_proba(raw)


def compile_pipeline(model: Any, features: Sequence[str], categorical: Sequence[str], numeric: Sequence[str],
                     probes: Any, task: str) -> Compiled | None:
    """`model` compiled, if it is the one family served this way and gives its bytes on `probes`; else None.

    `probes` are checked rows (Contract.check's Checked); `features`,
    `categorical` and `numeric` are the contract's columns, `features` in
    the order the model was fitted on.
    """
    try:
        compiled = _compile(model, list(features), list(categorical), list(numeric), task)
        got = compiled.outputs(probes.columns) if compiled is not None else None
    except Exception as error:  # any failure of a shortcut means the long way
        # E.g. a library version whose internals differ (the version-mismatch override).
        log.warning("serving every batch through scikit-learn: the pipeline did not compile (%s: %s)",
                    type(error).__name__, error)
        return None
    if compiled is None:
        log.info("serving every batch through scikit-learn: the pipeline is not a HistGradientBoosting one")
        return None
    expected = model_outputs(model, probes.features, task)
    if expected.dtype != got.dtype or expected.shape != got.shape or expected.tobytes() != got.tobytes():
        log.warning("serving every batch through scikit-learn: the compiled pipeline differed from it on "
                    "%d of %d probe rows", _differing_rows(expected, got), probes.rows)
        return None
    log.info("small batches (up to %d rows) are served by the compiled pipeline, verified on %d probe rows",
             SMALL_BATCH, probes.rows)
    return compiled


def _differing_rows(expected: np.ndarray, got: np.ndarray) -> int:
    if expected.shape != got.shape:
        return len(expected)
    differs = expected.reshape(len(expected), -1) != got.reshape(len(got), -1)
    return int(differs.any(axis=1).sum())


def _compile(model: Any, features: list[str], categorical: list[str], numeric: list[str],
             task: str) -> Compiled | None:
    if not isinstance(model, Pipeline):
        return None
    steps = [step for _, step in model.steps]
    if steps and isinstance(steps[0], UnknownBucket):
        bucket, steps = steps[0], steps[1:]
        if list(bucket.categories) != categorical:
            return None
    elif categorical:
        return None
    if len(steps) != 2:
        return None
    preprocess, estimator = steps
    if type(estimator) not in (HistGradientBoostingClassifier, HistGradientBoostingRegressor):
        return None
    if not _plain_columns(preprocess, categorical, numeric):
        return None
    inner = estimator._preprocessor
    # The boosting's own encoder comes first: it must keep the categorical
    # columns first, in their order, or a column's code is not its position.
    if inner is not None and not np.array_equal(estimator._is_categorical_remapped, estimator.is_categorical_):
        return None
    if (estimator.is_categorical_ is not None and
            list(np.flatnonzero(estimator.is_categorical_)) != list(range(len(categorical)))):
        return None
    codes = tuple((name, *_codes_of(model, inner, features, categorical, numeric, position))
                  for position, name in enumerate(categorical))
    imputer = preprocess.named_transformers_["numeric"] if numeric else None
    imputed = tuple((name, float(value)) for name, value in
                    zip(numeric, imputer.statistics_ if imputer is not None else [], strict=True))
    known_categories, feature_map = estimator._bin_mapper.make_known_categories_bitsets()
    return Compiled(
        codes=codes,
        imputed=imputed,
        trees=tuple(tuple((predictor.nodes, predictor.raw_left_cat_bitsets) for predictor in iteration)
                    for iteration in estimator._predictors),
        baseline=np.asarray(estimator._baseline_prediction).reshape(-1),
        known_categories=known_categories,
        feature_map=feature_map,
        loss=estimator._loss,
        task=task,
    )


def _plain_columns(preprocess: Any, categorical: list[str], numeric: list[str]) -> bool:
    """The train stage's HistGradientBoosting preprocessing: ordinal codes, then the imputer; nothing dropped."""
    if not isinstance(preprocess, ColumnTransformer):
        return False
    fitted = [(name, step, list(columns)) for name, step, columns in preprocess.transformers_
              if not (name == "remainder" and (step == "drop" or len(columns) == 0))]
    expected = ([("categorical", OrdinalEncoder, categorical)] if categorical else []) + (
        [("numeric", SimpleImputer, numeric)] if numeric else [])
    if [(name, type(step), columns) for name, step, columns in fitted] != expected:
        return False
    if numeric:
        # An imputer drops a column it learned nothing for (all missing in training): then positions shift.
        statistics = preprocess.named_transformers_["numeric"].statistics_
        if np.isnan(np.asarray(statistics, dtype=np.float64)).any():
            return False
    return True


def _codes_of(model: Pipeline, inner: Any, features: list[str], categorical: list[str], numeric: list[str],
              position: int) -> tuple[dict[str, float], float]:
    """What the fitted steps make of each recorded value of one column, and of any other value."""
    name = categorical[position]
    values = list(model.steps[0][1].categories[name])
    frame = pd.DataFrame({column: [UNSEEN] * (len(values) + 1) for column in categorical}
                         | {column: [0.0] * (len(values) + 1) for column in numeric})
    frame[name] = [*values, UNSEEN]
    matrix = model[:-1].transform(frame[features])
    if inner is not None:
        matrix = inner.transform(matrix)
    column = np.asarray(matrix, dtype=np.float64)[:, position]
    return dict(zip(values, column[:-1].tolist(), strict=True)), float(column[-1])


def probe_rows(categories: dict[str, list[str]], numeric: Sequence[str],
               ranges: dict[str, tuple[float | None, float | None]], example: dict[str, Any]) -> pd.DataFrame:
    """Rows that exercise every lookup and the imputer: one per recorded category, an unknown and a
    missing one, each numeric feature missing and at its range's ends, and random rows."""
    rows: list[dict[str, Any]] = [dict(example)]
    for name, values in categories.items():
        rows += [{**example, name: value} for value in [*values, UNSEEN, None]]
    for name in numeric:
        low, high = ranges.get(name, (None, None))
        rows += [{**example, name: value} for value in (np.nan, low, high) if value is not None]
    rng = np.random.default_rng(PROBE_SEED)
    for _ in range(RANDOM_PROBES):
        row = {}
        for name in example:
            if name in categories:
                choices = [*categories[name], UNSEEN, None]
                row[name] = choices[int(rng.integers(len(choices)))]
            else:
                row[name] = _random_number(rng, ranges.get(name, (None, None)), float(example[name]))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(example))
    for name in categories:
        frame[name] = frame[name].astype(object)
    for name in numeric:
        frame[name] = frame[name].astype(np.float64)
    return frame


def _random_number(rng: np.random.Generator, bounds: tuple[float | None, float | None], typical: float) -> float:
    if rng.random() < 0.1:
        return np.nan
    low, high = bounds
    scale = max(abs(typical), 1.0)
    low = typical - 3 * scale if low is None else low
    high = typical + 3 * scale if high is None else high
    return float(rng.uniform(low, high))
