"""The validation estimate: seeded K-fold cross-validation on the training features (stratified for classes).

Hyperparameters are chosen by this estimate (`make exps` ranks by it), never
by the test set: a test figure that picked the winner is no longer an honest
estimate of the winner's quality. Each fold fits a clone of the unfitted
pipeline, so the deployed model (fitted on every training row) is untouched.
"""

from __future__ import annotations

import statistics

import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import KFold, StratifiedKFold
from threadpoolctl import threadpool_limits

from src.pipeline.adapter import REGRESSION
from src.pipeline.model import normalise_threads, thread_limits
from src.pipeline.predictions import model_outputs
from src.pipeline.scoring import scores

# Spread and mean rounded as the test metrics are: they read well and diff cleanly.
DIGITS = 12


def splitter(y: pd.Series, classes: list, folds: int, seed: int, task: str | None = None) -> KFold | StratifiedKFold:
    """Shuffled folds, seeded by an integer (a RandomState would give other folds each call), stratified.

    Every class needs a row in every fold: StratifiedKFold only warns when one
    has fewer rows than folds, and a fold without it has no score for it. A
    regression has no classes to stratify by: plain shuffled K-fold.
    """
    if task == REGRESSION:
        if len(y) < folds:
            raise ValueError(
                f"train.cv_folds is {folds}, but there are only {len(y)} training rows: "
                "lower train.cv_folds or gather more rows"
            )
        return KFold(n_splits=folds, shuffle=True, random_state=seed)
    counts = pd.Series(y).value_counts()
    short = {label: int(counts.get(label, 0)) for label in classes if counts.get(label, 0) < folds}
    if short:
        raise ValueError(
            f"train.cv_folds is {folds}, but classes {short} have fewer training rows than folds: "
            "lower train.cv_folds or gather more rows"
        )
    return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)


def cross_validate(
    model: BaseEstimator,
    X: pd.DataFrame,
    y: pd.Series,
    classes: list,
    folds: int,
    seed: int,
    threshold: float,
    threads: int = 1,
    task: str | None = None,
) -> list[dict[str, float]]:
    """The metrics of each fold: a clone of unfitted `model` fitted on the others, scored on it.

    Under the limits train fits with, and each fold's model is predicted as the
    saved one is (normalise_threads: a forest sums its trees on one job), so
    the scores are the same bytes on any thread count.
    """
    per_fold = []
    with threadpool_limits(limits=thread_limits(threads)):
        for fit_rows, held_rows in splitter(y, classes, folds, seed, task).split(X, y):
            fold = normalise_threads(clone(model).fit(X.iloc[fit_rows], y.iloc[fit_rows]))
            outputs = model_outputs(fold, X.iloc[held_rows], task)
            per_fold.append(scores(y.iloc[held_rows].to_numpy(), outputs, classes, threshold, task))
    return per_fold


def summarise(per_fold: list[dict[str, float]], rows: int) -> dict:
    """Mean and sample standard deviation (n - 1) of each metric over the folds, the fold count and rows.

    The metric names are eval/metrics.json's: `roc_auc.mean` here estimates
    what `roc_auc` there measures on the test set.
    """
    names = list(per_fold[0])
    summary: dict = {}
    for name in names:
        values = [fold[name] for fold in per_fold]
        summary[name] = {
            "mean": round(statistics.fmean(values), DIGITS),
            "std": round(statistics.stdev(values), DIGITS) if len(values) > 1 else 0.0,
        }
    summary["folds"] = len(per_fold)
    summary["rows"] = {"train": int(rows)}
    return summary
