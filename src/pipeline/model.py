"""The scikit-learn pipeline: unknown bucket, encoding, imputation, scaling, estimator.

Generic over the adapter's numeric columns and the category lists recorded in
params.yaml (whose keys are the categorical columns, in order). Every random
state comes from the one `seed`. The thread count is the machine's
(config.threads()), not a param: every use of threads here was measured to
leave the fitted result and the predictions unchanged (thread_limits), and the
count the fitted estimators keep is reset before pickling (normalise_threads),
so 1, 2 or N threads write the same model bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    StackingClassifier,
    StackingRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder

from src.pipeline.adapter import CLASSIFICATION, REGRESSION, UNKNOWN
from src.pipeline.params import ParamsError, Train
from src.pipeline.selection import SelectFeatures

# HistGradientBoosting's native categorical support takes at most this many
# categories per feature (max_bins 255, one bin kept for missing values).
HGB_MAX_CATEGORIES = 254


def thread_limits(threads: int) -> dict[str, int]:
    """threadpoolctl limits for fitting and predicting: OpenMP on `threads`, BLAS on one.

    OpenMP is HistGradientBoosting's parallelism: its predictions were identical
    at 1 and 2 threads on the real training features, and its pickles differed
    only by the count it stores (reset by normalise_threads). BLAS stays at one
    thread whatever the machine: lbfgs's coefficients moved with the BLAS thread
    count (8e-17), and so would every later byte.
    """
    return {"blas": 1, "openmp": threads}


class UnknownBucket(TransformerMixin, BaseEstimator):
    """Map every categorical value not on its recorded list (or missing) to UNKNOWN.

    Stateless: the lists come from params.yaml, never from the data it sees,
    so the encoding cannot drift with the training data or the input batch.
    """

    def __init__(self, categories: dict[str, list[str]]):
        self.categories = categories

    def fit(self, X: pd.DataFrame, y=None):
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        X = X.copy()
        for column, values in self.categories.items():
            known = X[column].isin(values)
            X[column] = X[column].astype("object").where(known, UNKNOWN).astype("str")
        return X

    def get_feature_names_out(self, input_features=None):
        return np.asarray(input_features, dtype=object)


def count_unknown(frame: pd.DataFrame, categories: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    """Per categorical column: values not on the recorded list, and missing values."""
    counts = {}
    for column, values in categories.items():
        missing = frame[column].isna()
        counts[column] = {
            "unknown": int((~frame[column].isin(values) & ~missing).sum()),
            "missing": int(missing.sum()),
        }
    return counts


def _encoded_categories(categories: dict[str, list[str]]) -> list[list[str]]:
    # The unknown bucket is one explicit, always-present category (last).
    return [list(values) + [UNKNOWN] for values in categories.values()]


def _preprocess(model: str, train: Train, categories: dict[str, list[str]], numeric: list[str]) -> ColumnTransformer:
    categorical = list(categories)
    imputer = SimpleImputer(strategy=train.impute_strategy)
    if model == "hist_gradient_boosting":
        # Ordinal codes + native categorical splits: one-hot columns would make
        # each boosting iteration scan ~150 more features for the same splits.
        encoder = OrdinalEncoder(categories=_encoded_categories(categories), dtype=np.float64)
        return ColumnTransformer([("categorical", encoder, categorical), ("numeric", imputer, numeric)])
    encoder = OneHotEncoder(categories=_encoded_categories(categories), handle_unknown="error", dtype=np.float64)
    numeric_steps = [("impute", imputer)]
    if model in ("logistic_regression", "mlp"):
        numeric_steps.append(("scale", MinMaxScaler()))  # lbfgs and adam want comparable ranges
    return ColumnTransformer(
        [("categorical", encoder, categorical), ("numeric", Pipeline(numeric_steps), numeric)],
        sparse_threshold=0.0,  # dense: one memory layout whatever the data's sparsity
    )


def _estimator(
    model: str,
    train: Train,
    seed: int,
    threads: int = 1,
    categorical_mask: list[bool] | None = None,
    task: str = CLASSIFICATION,
) -> BaseEstimator:
    # Each params section's keys are the estimator's own argument names, so
    # every hyperparameter in params.yaml reaches the estimator unrenamed
    # (but the linear family's for a regression: see below).
    if task == REGRESSION:
        return _regressor(model, train, seed, threads, categorical_mask)
    if model == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(
            **train.hist_gradient_boosting.model_dump(),
            categorical_features=categorical_mask,
            early_stopping=False,  # its validation split would be one more random step
            random_state=seed,
        )
    if model == "logistic_regression":
        return LogisticRegression(**train.logistic_regression.model_dump(), solver="lbfgs", random_state=seed)
    if model == "random_forest":
        # Trees are seeded up front and collected in order, so fitting on
        # `threads` gives the same forest; the stored n_jobs is reset to 1
        # before pickling (normalise_threads), because predict_proba with more
        # jobs sums the trees in thread-finishing order.
        return RandomForestClassifier(**train.random_forest.model_dump(), n_jobs=threads, random_state=seed)
    if model == "mlp":
        # One integer random_state seeds all three random steps, drawn in turn from
        # one RandomState: the initial weights, the early-stopping split and each
        # epoch's batch shuffling. Its matrix products go through BLAS, which
        # thread_limits keeps on one thread whatever the machine: the sums'
        # order, and so every weight's last bit, would otherwise follow the count.
        return MLPClassifier(**train.mlp.model_dump(), solver="adam", shuffle=True, random_state=seed)
    raise ValueError(f"unknown model {model!r}")


def ridge_alpha(C: float) -> float:
    """Ridge's penalty for the linear family's `C`: alpha = 1 / (2C), as scikit-learn's Ridge documents."""
    return 1.0 / (2.0 * C)


def _regressor(model: str, train: Train, seed: int, threads: int, categorical_mask: list[bool] | None) -> BaseEstimator:
    """The regressor of each model family: the same hyperparameters, seed and thread policy as its classifier.

    The linear family keeps its params name, `logistic_regression`, for a
    regression too, and becomes a ridge regression (least squares with an L2
    penalty): the same penalty, with `C` read as alpha = 1 / (2C), solved
    directly (its `max_iter` bounds only the iterative solvers, which are not
    used). docs/adapt.md says so.
    """
    if model == "hist_gradient_boosting":
        return HistGradientBoostingRegressor(
            **train.hist_gradient_boosting.model_dump(),
            categorical_features=categorical_mask,
            early_stopping=False,  # its validation split would be one more random step
            random_state=seed,
        )
    if model == "logistic_regression":
        # A direct solve: no random step (Ridge's random_state serves only sag/saga).
        return Ridge(alpha=ridge_alpha(train.logistic_regression.C), solver="cholesky")
    if model == "random_forest":
        # As the classifier: seeded trees, n_jobs reset to 1 before pickling (normalise_threads).
        return RandomForestRegressor(**train.random_forest.model_dump(), n_jobs=threads, random_state=seed)
    if model == "mlp":
        # As the classifier: one integer random_state for all three random steps, BLAS on one thread.
        return MLPRegressor(**train.mlp.model_dump(), solver="adam", shuffle=True, random_state=seed)
    raise ValueError(f"unknown model {model!r}")


def _single(
    model: str,
    train: Train,
    categories: dict[str, list[str]],
    numeric: list[str],
    seed: int,
    threads: int,
    task: str = CLASSIFICATION,
) -> list[tuple[str, Any]]:
    # The ColumnTransformer puts the categorical columns first.
    mask = [True] * len(categories) + [False] * len(numeric)
    return [
        ("preprocess", _preprocess(model, train, categories, numeric)),
        ("estimator", _estimator(model, train, seed, threads, mask, task)),
    ]


def _check_categories(train: Train, categories: dict[str, list[str]]) -> None:
    """Refuse category lists the chosen estimators cannot encode: an empty list, or too many for HGB."""
    empty = [name for name, values in categories.items() if not values]
    if empty:
        raise ValueError(f"no categories recorded for {empty}: run `make categories` and commit params.yaml")
    used = train.stacking.estimators if train.model == "stacking" else [train.model]
    too_many = {name: len(values) for name, values in categories.items() if len(values) > HGB_MAX_CATEGORIES}
    if "hist_gradient_boosting" in used and too_many:
        raise ValueError(f"hist_gradient_boosting takes at most {HGB_MAX_CATEGORIES} categories: {too_many}")


def _select_features(
    train: Train, categories: dict[str, list[str]], numeric: list[str], seed: int, threads: int, task: str
) -> SelectFeatures:
    """The whole pipeline, rebuilt for the features it keeps (src/pipeline/selection.py): classification only."""
    if task == REGRESSION:  # its ranking scores ROC AUC
        raise ParamsError(
            f"train.feature_selection.method is {train.feature_selection.method!r}, but "
            "feature selection ranks features for a classification only, and this adapter's "
            "target is a regression: set it to none"
        )
    train.feature_selection.count(len(categories) + len(numeric))  # a bad keep stops here, not after a fit
    return SelectFeatures(train.model_dump(), categories, numeric, seed, threads)


def _stacking_classifier(
    train: Train, categories: dict[str, list[str]], numeric: list[str], seed: int
) -> StackingClassifier:
    """`train.stacking`'s classifier: its base estimators' pipelines, the final estimator on their probabilities."""
    return StackingClassifier(
        # One job for the base estimators' joblib: stacking calls their
        # predict_proba inside fit (the out-of-fold probabilities), and a
        # forest's predict_proba on more jobs sums the trees in
        # thread-finishing order. A queued sweep's stacking experiment differed
        # from `dvc repro --force` at the same params with n_jobs=threads.
        # (HistGradientBoosting's OpenMP threads come from thread_limits, not
        # from this argument, and stay invariant.)
        estimators=[
            (name, Pipeline(_single(name, train, categories, numeric, seed, threads=1)))
            for name in train.stacking.estimators
        ],
        final_estimator=_estimator(train.stacking.final_estimator, train, seed),
        # An integer-seeded, shuffled splitter: a RandomState instance would
        # give other folds on every fit.
        cv=StratifiedKFold(n_splits=train.stacking.cv_folds, shuffle=True, random_state=seed),
        stack_method="predict_proba",
        # One fold at a time: its base estimators already use the threads, and
        # parallel folds would multiply them past the cores.
        n_jobs=1,
    )


def _stacking_regressor(
    train: Train, categories: dict[str, list[str]], numeric: list[str], seed: int
) -> StackingRegressor:
    """`train.stacking`'s regressor: the families' regressors, then the final estimator on their predictions."""
    return StackingRegressor(
        # One job, one fold at a time, and integer-seeded shuffled folds, as the classifier.
        estimators=[
            (name, Pipeline(_single(name, train, categories, numeric, seed, threads=1, task=REGRESSION)))
            for name in train.stacking.estimators
        ],
        # The linear family's regressor: a ridge on the base estimators' out-of-fold predictions.
        final_estimator=_estimator(train.stacking.final_estimator, train, seed, task=REGRESSION),
        cv=KFold(n_splits=train.stacking.cv_folds, shuffle=True, random_state=seed),
        n_jobs=1,
    )


def build_pipeline(
    train: Train,
    categories: dict[str, list[str]],
    numeric: list[str] | tuple[str, ...],
    seed: int,
    threads: int = 1,
    task: str = CLASSIFICATION,
) -> Pipeline:
    """The unfitted pipeline that `train.model` selects: categorical columns are `categories`' keys.

    `threads` is for the random forest's n_jobs; fit under thread_limits(threads).
    `task` is the adapter's (Adapter.task): classifiers, or the families' regressors.
    """
    if task not in (CLASSIFICATION, REGRESSION):
        raise ValueError(f"unknown task {task!r}: {CLASSIFICATION!r} or {REGRESSION!r}")
    numeric = list(numeric)
    _check_categories(train, categories)
    if train.feature_selection.method != "none":
        return _select_features(train, categories, numeric, seed, threads, task)
    steps: list[tuple[str, Any]] = [("bucket", UnknownBucket(categories))]
    if train.model != "stacking":
        return Pipeline(steps + _single(train.model, train, categories, numeric, seed, threads, task))
    if task == REGRESSION:
        stacking = _stacking_regressor(train, categories, numeric, seed)
    else:
        stacking = _stacking_classifier(train, categories, numeric, seed)
    return Pipeline(steps + [("estimator", stacking)])


def _estimators(node: Any, seen: set[int]) -> Iterator[BaseEstimator]:
    """Every estimator reachable from `node` through attributes, lists, tuples and dicts."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, BaseEstimator):
        yield node
        node = vars(node)
    if isinstance(node, dict):
        node = list(node.values())
    if isinstance(node, list | tuple):
        for item in node:
            yield from _estimators(item, seen)


def normalise_threads(model: BaseEstimator) -> BaseEstimator:
    """Reset the thread counts that fitted estimators keep; return `model`, changed in place.

    Pickled as fitted, a model trained on 2 threads differs from one trained on
    1 in these attributes only. A HistGradientBoosting keeps the OpenMP count of
    its fit in its bin mapper (which bins only training data, never at predict
    time): None is its default, "as many as the limits allow". A random forest keeps
    n_jobs, and predicts with it: 1, because more jobs sum the trees' outputs in
    thread-finishing order (15 calls gave 15 different byte-hashes).
    """
    for estimator in _estimators(model, set()):
        if isinstance(estimator, HistGradientBoostingClassifier | HistGradientBoostingRegressor) and hasattr(
            estimator, "_bin_mapper"
        ):
            estimator._bin_mapper.n_threads = None
        if isinstance(estimator, RandomForestClassifier | RandomForestRegressor):
            estimator.n_jobs = 1
        if isinstance(estimator, SelectFeatures):
            estimator.threads = 1
    return model


def fitted_state(estimator: BaseEstimator, prefix: str = "") -> dict[str, Any]:
    """Human-readable learned values: imputation statistics, scaler ranges, encodings."""
    state: dict[str, Any] = {}
    if isinstance(estimator, SelectFeatures):
        state.update(fitted_state(estimator.pipeline_, prefix))
    elif isinstance(estimator, Pipeline):
        for name, step in estimator.steps:
            state.update(fitted_state(step, f"{prefix}{name}/"))
    elif isinstance(estimator, ColumnTransformer):
        for name, transformer, columns in estimator.transformers_:
            if name == "remainder":
                continue
            state.update(fitted_state(transformer, f"{prefix}{name}/"))
            if isinstance(transformer, SimpleImputer):
                state[f"{prefix}{name}/impute_values"] = _by_column(columns, transformer.statistics_)
            if isinstance(transformer, Pipeline):
                for step_name, step in transformer.steps:
                    if isinstance(step, SimpleImputer):
                        state[f"{prefix}{name}/{step_name}/impute_values"] = _by_column(columns, step.statistics_)
                    if isinstance(step, MinMaxScaler):
                        state[f"{prefix}{name}/{step_name}/ranges"] = {
                            column: [float(low), float(high)]
                            for column, low, high in zip(columns, step.data_min_, step.data_max_, strict=False)
                        }
    elif isinstance(estimator, StackingClassifier | StackingRegressor):
        for name, base in estimator.named_estimators_.items():
            state.update(fitted_state(base, f"{prefix}{name}/"))
        final = estimator.final_estimator_
        state[f"{prefix}final_estimator/coefficients"] = [float(v) for v in np.ravel(final.coef_)]
    return state


def _by_column(columns, values) -> dict[str, float | None]:
    return {column: (None if pd.isna(value) else float(value)) for column, value in zip(columns, values, strict=True)}


def structure(train: Train) -> dict[str, Any]:
    """The declared model: estimator(s) and their hyperparameters from params."""

    def one(name: str) -> dict[str, Any]:
        return {"estimator": name, "hyperparameters": getattr(train, name).model_dump()}

    if train.model != "stacking":
        return one(train.model)
    return {
        "estimator": "stacking",
        "cv_folds": train.stacking.cv_folds,
        "base_estimators": [one(name) for name in train.stacking.estimators],
        "final_estimator": one(train.stacking.final_estimator),
    }


def seeds(model: BaseEstimator) -> dict[str, int | None]:
    """Every random state of the unfitted or fitted `model`, by its scikit-learn parameter path.

    Read from the estimators themselves (get_params), so it lists what the fit
    really used: each estimator's random_state and each CV splitter's seed.
    docs/reproducibility.md says what each one draws.
    """
    found: dict[str, int | None] = {}
    for path, value in sorted(model.get_params(deep=True).items()):
        if path.endswith("random_state"):
            found[path] = value
        elif hasattr(value, "split") and hasattr(value, "random_state"):  # a CV splitter
            found[f"{path}.random_state"] = value.random_state
    if isinstance(model, SelectFeatures) and hasattr(model, "pipeline_"):
        found.update({f"pipeline_.{path}": value for path, value in seeds(model.pipeline_).items()})
    return found
