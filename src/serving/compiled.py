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
- every tree's nodes go into one set of arrays (`Forest`), walked for all
  trees and rows at once with the rules of scikit-learn's own tree predictor
  (`_predict_from_raw_data` in its _predictor.pyx: missing values, category
  bitsets, unknown categories as missing); calling that function once per tree
  costs 200 calls of its per-call setup, about 1 ms a row here, where the walk
  takes a third of that. The leaves are summed into the baseline in
  scikit-learn's order, and the loss's own link turns the sums into
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
    forest: Forest
    iterations: int
    baseline: np.ndarray
    loss: Any
    task: str

    def matrix(self, features: Mapping[str, pd.Series | np.ndarray]) -> np.ndarray:
        """What the boosting's trees read: codes, then numeric values (imputed), as float64 rows.

        `features` holds each feature's column (a frame, or Checked.columns).
        """
        rows = len(features[self.codes[0][0] if self.codes else self.imputed[0][0]])
        matrix = np.empty((rows, len(self.codes) + len(self.imputed)), dtype=np.float64)
        for position, (name, lookup, other) in enumerate(self.codes):
            matrix[:, position] = [
                lookup.get(value, other) if isinstance(value, str) else other for value in features[name].tolist()
            ]
        for position, (name, value) in enumerate(self.imputed, start=len(self.codes)):
            column = np.asarray(features[name], dtype=np.float64)
            matrix[:, position] = np.where(np.isnan(column), value, column)
        return matrix

    def outputs(self, features: Mapping[str, pd.Series | np.ndarray]) -> np.ndarray:
        """model_outputs' bytes: predict_proba's (rows x classes), or a regression's values (rows)."""
        matrix = self.matrix(features)
        rows, outputs = len(matrix), len(self.baseline)
        leaves = self.forest.leaf_values(matrix).reshape(rows, self.iterations, outputs)
        # Per output, the baseline and then each iteration's tree: summed left to
        # right by cumsum, as scikit-learn's `raw += tree` does, one tree at a time.
        terms = np.empty((outputs, self.iterations + 1, rows), dtype=np.float64)
        terms[:, 0, :] = (np.zeros((rows, outputs), dtype=self.baseline.dtype) + self.baseline).T
        terms[:, 1:, :] = leaves.transpose(2, 1, 0)
        raw = np.asfortranarray(np.cumsum(terms, axis=1)[:, -1, :].T)
        if self.task == REGRESSION:
            return np.asarray(self.loss.link.inverse(raw.ravel()), dtype=np.float64)
        return self.loss.predict_proba(raw)


@dataclass(frozen=True)
class Forest:
    """Every tree's nodes in one set of arrays (global node numbers), with each tree's root."""

    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    missing_left: np.ndarray
    leaf: np.ndarray
    categorical: np.ndarray
    bitset: np.ndarray  # a categorical node's row in left_bitsets
    value: np.ndarray
    left_bitsets: np.ndarray  # (rows, 8) uint32: the categories that go left
    known_bitsets: np.ndarray  # per categorical feature: the categories seen in training
    feature_map: np.ndarray  # feature -> its row in known_bitsets
    depth: int

    @classmethod
    def of(
        cls, trees: Sequence[tuple[np.ndarray, np.ndarray]], known_bitsets: np.ndarray, feature_map: np.ndarray
    ) -> Forest:
        """From (nodes, raw_left_cat_bitsets) per tree, in order, and the bin mapper's known bitsets."""
        sizes = np.array([len(nodes) for nodes, _ in trees], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        bitset_starts = np.concatenate([[0], np.cumsum([len(bits) for _, bits in trees])[:-1]]).astype(np.int64)
        nodes = np.concatenate([nodes for nodes, _ in trees])
        offset = np.repeat(starts, sizes)
        bitsets = [bits for _, bits in trees if len(bits)]
        return cls(
            roots=starts,
            feature=nodes["feature_idx"].astype(np.int64),
            threshold=nodes["num_threshold"].astype(np.float64),
            left=nodes["left"].astype(np.int64) + offset,
            right=nodes["right"].astype(np.int64) + offset,
            missing_left=nodes["missing_go_to_left"].astype(bool),
            leaf=nodes["is_leaf"].astype(bool),
            categorical=nodes["is_categorical"].astype(bool),
            bitset=nodes["bitset_idx"].astype(np.int64) + np.repeat(bitset_starts, sizes),
            value=nodes["value"].astype(np.float64),
            left_bitsets=np.concatenate(bitsets) if bitsets else np.zeros((0, 8), dtype=np.uint32),
            known_bitsets=np.asarray(known_bitsets),
            feature_map=np.asarray(feature_map, dtype=np.int64),
            depth=int(nodes["depth"].max()),
        )

    def leaf_values(self, matrix: np.ndarray) -> np.ndarray:
        """(rows, trees): the value of the leaf each row reaches in each tree."""
        node = np.repeat(self.roots[None, :], len(matrix), axis=0)
        rows = np.arange(len(matrix))[:, None]
        for _ in range(self.depth + 1):
            leaf = self.leaf[node]
            if leaf.all():
                return self.value[node]
            value = matrix[rows, self.feature[node]]
            missing = np.isnan(value)
            missing_left = self.missing_left[node]
            with np.errstate(invalid="ignore"):
                go_left = value <= self.threshold[node]
            categorical = self.categorical[node] & ~missing
            if categorical.any():
                go_left = np.where(categorical, self._categorical_left(node, value, categorical, missing_left), go_left)
            go_left = np.where(missing, missing_left, go_left)
            node = np.where(leaf, node, np.where(go_left, self.left[node], self.right[node]))
        raise ValueError(f"a walk through the trees did not reach a leaf in {self.depth + 1} steps")

    def _categorical_left(
        self, node: np.ndarray, value: np.ndarray, categorical: np.ndarray, missing_left: np.ndarray
    ) -> np.ndarray:
        # As _predict_from_raw_data: a negative value is missing; a category in the
        # split's bitset goes left; one seen in training but not in it goes right;
        # one never seen goes where missing values go.
        negative = value < 0
        code = np.where(categorical & ~negative, value, 0).astype(np.int64)
        word, bit = code >> 5, code & 31
        in_split = (self.left_bitsets[np.where(categorical, self.bitset[node], 0), word] >> bit) & 1
        known = (self.known_bitsets[np.where(categorical, self.feature_map[self.feature[node]], 0), word] >> bit) & 1
        unseen_left = np.where(known == 1, False, missing_left)
        return np.where(negative, missing_left, np.where(in_split == 1, True, unseen_left))


def compile_pipeline(
    model: Any, features: Sequence[str], categorical: Sequence[str], numeric: Sequence[str], probes: Any, task: str
) -> Compiled | None:
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
        log.warning(
            "serving every batch through scikit-learn: the pipeline did not compile (%s: %s)",
            type(error).__name__,
            error,
        )
        return None
    if compiled is None:
        log.info("serving every batch through scikit-learn: the pipeline is not a HistGradientBoosting one")
        return None
    expected = model_outputs(model, probes.features, task)
    if expected.dtype != got.dtype or expected.shape != got.shape or expected.tobytes() != got.tobytes():
        log.warning(
            "serving every batch through scikit-learn: the compiled pipeline differed from it on %d of %d probe rows",
            _differing_rows(expected, got),
            probes.rows,
        )
        return None
    log.info(
        "small batches (up to %d rows) are served by the compiled pipeline, verified on %d probe rows",
        SMALL_BATCH,
        probes.rows,
    )
    return compiled


def _differing_rows(expected: np.ndarray, got: np.ndarray) -> int:
    if expected.shape != got.shape:
        return len(expected)
    differs = expected.reshape(len(expected), -1) != got.reshape(len(got), -1)
    return int(differs.any(axis=1).sum())


def _compile(model: Any, features: list[str], categorical: list[str], numeric: list[str], task: str) -> Compiled | None:
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
    if estimator.is_categorical_ is not None and list(np.flatnonzero(estimator.is_categorical_)) != list(
        range(len(categorical))
    ):
        return None
    codes = tuple(
        (name, *_codes_of(model, inner, features, categorical, numeric, position))
        for position, name in enumerate(categorical)
    )
    imputer = preprocess.named_transformers_["numeric"] if numeric else None
    imputed = tuple(
        (name, float(value))
        for name, value in zip(numeric, imputer.statistics_ if imputer is not None else [], strict=True)
    )
    known_bitsets, feature_map = estimator._bin_mapper.make_known_categories_bitsets()
    return Compiled(
        codes=codes,
        imputed=imputed,
        forest=Forest.of(
            [
                (predictor.nodes, predictor.raw_left_cat_bitsets)
                for iteration in estimator._predictors
                for predictor in iteration
            ],
            known_bitsets,
            feature_map,
        ),
        iterations=len(estimator._predictors),
        baseline=np.asarray(estimator._baseline_prediction).reshape(-1),
        loss=estimator._loss,
        task=task,
    )


def _plain_columns(preprocess: Any, categorical: list[str], numeric: list[str]) -> bool:
    """The train stage's HistGradientBoosting preprocessing: ordinal codes, then the imputer; nothing dropped."""
    if not isinstance(preprocess, ColumnTransformer):
        return False
    fitted = [
        (name, step, list(columns))
        for name, step, columns in preprocess.transformers_
        if not (name == "remainder" and (step == "drop" or len(columns) == 0))
    ]
    expected = ([("categorical", OrdinalEncoder, categorical)] if categorical else []) + (
        [("numeric", SimpleImputer, numeric)] if numeric else []
    )
    if [(name, type(step), columns) for name, step, columns in fitted] != expected:
        return False
    if numeric:
        # An imputer drops a column it learned nothing for (all missing in training): then positions shift.
        statistics = preprocess.named_transformers_["numeric"].statistics_
        if np.isnan(np.asarray(statistics, dtype=np.float64)).any():
            return False
    return True


def _codes_of(
    model: Pipeline, inner: Any, features: list[str], categorical: list[str], numeric: list[str], position: int
) -> tuple[dict[str, float], float]:
    """What the fitted steps make of each recorded value of one column, and of any other value."""
    name = categorical[position]
    values = list(model.steps[0][1].categories[name])
    frame = pd.DataFrame(
        {column: [UNSEEN] * (len(values) + 1) for column in categorical}
        | {column: [0.0] * (len(values) + 1) for column in numeric}
    )
    frame[name] = [*values, UNSEEN]
    matrix = model[:-1].transform(frame[features])
    if inner is not None:
        matrix = inner.transform(matrix)
    column = np.asarray(matrix, dtype=np.float64)[:, position]
    return dict(zip(values, column[:-1].tolist(), strict=True)), float(column[-1])


def probe_rows(
    categories: dict[str, list[str]],
    numeric: Sequence[str],
    ranges: dict[str, tuple[float | None, float | None]],
    example: dict[str, Any],
) -> pd.DataFrame:
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
