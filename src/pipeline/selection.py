"""Feature selection inside the fitted pipeline: `train.feature_selection`, off (none) by default.

With method `permutation`, SelectFeatures is the whole fitted model. Its fit:
1. splits the rows it is given (the training rows: never the test set) into a
   seeded, stratified holdout share and the rest;
2. fits the declared pipeline, every feature, on the rest (the ranker);
3. shuffles each feature `repeats` times on the holdout (seeded) and ranks the
   features by the mean drop in ROC AUC, rounded to 12 digits, ties going to
   the earlier feature in the input's order, so the ranking is stable;
4. fits the declared pipeline, built for the `keep` best features alone, on
   every row it was given.
It takes the full feature frame at prediction time and drops the others
itself, so the serving contract does not change. The ranker is not kept.

Inside train's cross-validation each fold runs its own selection on its own
training part: the estimate includes the selection step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.inspection import permutation_importance
from sklearn.model_selection import train_test_split

from src.pipeline.params import ParamsError, Train
from src.pipeline.predictions import is_binary

# Importances are rounded before ranking, so a last-bit difference cannot reorder two features.
DIGITS = 12


def ranking(importances: np.ndarray, keep: int) -> list[int]:
    """The positions of the `keep` largest importances, in input order; a tie goes to the earlier position."""
    rounded = np.round(np.asarray(importances, dtype=np.float64), DIGITS)
    order = sorted(range(len(rounded)), key=lambda index: (-rounded[index], index))
    return sorted(order[:keep])


class SelectFeatures(ClassifierMixin, BaseEstimator):
    """The declared pipeline fitted on the features a seeded permutation ranking keeps.

    Built by src.pipeline.model.build_pipeline when `train.feature_selection.method`
    is not none. `train` is the train section as a plain dict (a pydantic
    object pickles a set, whose order follows the hash seed). `threads` is
    reset to 1 before pickling (model.normalise_threads), as the forest's n_jobs is.
    """

    def __init__(
        self, train: dict, categories: dict[str, list[str]], numeric: list[str], random_state: int, threads: int = 1
    ):
        self.train = train
        self.categories = categories
        self.numeric = numeric
        self.random_state = random_state
        self.threads = threads

    def _plain(self) -> Train:
        # The same train section with selection off: what the ranker and the final fit are.
        train = Train.model_validate(self.train)
        return train.model_copy(
            update={"feature_selection": train.feature_selection.model_copy(update={"method": "none"})}
        )

    def fit(self, X: pd.DataFrame, y: pd.Series):
        # Imported here: model.py builds this step, so it imports this module first.
        from src.pipeline.model import build_pipeline, normalise_threads

        selection = Train.model_validate(self.train).feature_selection
        plain = self._plain()
        features = list(self.categories) + list(self.numeric)
        missing = [name for name in features if name not in X.columns]
        if missing:
            raise ValueError(f"feature selection: the input lacks the features {missing}")
        columns = [name for name in X.columns if name in features]  # the input's order breaks ties
        keep = selection.count(len(columns))
        y = pd.Series(y)
        try:
            fit_rows, held_rows = train_test_split(
                np.arange(len(X)), test_size=selection.holdout, stratify=y, random_state=self.random_state
            )
        except ValueError as error:
            raise ParamsError(
                f"train.feature_selection.holdout is {selection.holdout}, but the stratified "
                f"holdout of {len(X)} rows cannot be drawn ({error}): raise it, or gather more "
                "rows"
            ) from None
        ranker = build_pipeline(plain, self.categories, self.numeric, self.random_state, self.threads)
        # One job for the forest's predictions, as the saved model predicts (normalise_threads).
        ranker = normalise_threads(ranker.fit(X.iloc[fit_rows][columns], y.iloc[fit_rows]))
        scoring = "roc_auc" if is_binary(list(ranker.classes_)) else "roc_auc_ovr"
        result = permutation_importance(
            ranker,
            X.iloc[held_rows][columns],
            y.iloc[held_rows],
            scoring=scoring,
            n_repeats=selection.repeats,
            random_state=self.random_state,
            n_jobs=1,
        )
        kept = [columns[index] for index in ranking(result.importances_mean, keep)]
        self.importances_ = {
            name: float(value) for name, value in zip(columns, np.round(result.importances_mean, DIGITS), strict=True)
        }
        self.selected_features_ = kept
        self.pipeline_ = build_pipeline(
            plain,
            {name: values for name, values in self.categories.items() if name in kept},
            [name for name in self.numeric if name in kept],
            self.random_state,
            self.threads,
        ).fit(X[kept], y)
        self.classes_ = self.pipeline_.classes_
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.pipeline_.predict_proba(X[self.selected_features_])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.pipeline_.predict(X[self.selected_features_])


def record(model: Any) -> dict | None:
    """The manifest's `feature_selection`: the settings, the kept features in order and every importance.

    None for a model without a selection step, so the manifest of the default
    (method none) has no such key and keeps its bytes.
    """
    if not isinstance(model, SelectFeatures):
        return None
    selection = Train.model_validate(model.train).feature_selection
    return {
        **selection.model_dump(),
        "selected_features": list(model.selected_features_),
        "importances": dict(model.importances_),
    }
