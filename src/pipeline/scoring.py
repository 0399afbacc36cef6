"""The metrics of a model's probabilities: one definition for the test set and the validation folds.

evaluate scores the held-out test set with it (eval/metrics.json) and train
scores each cross-validation fold (metrics/validation.json), so both files
carry the same names computed the same way.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics

from src.pipeline.adapter import REGRESSION
from src.pipeline.predictions import is_binary

# A regression's metrics, in eval/metrics.json's order; rmse ranks (`make exps`, lower is better).
REGRESSION_METRICS = ("rmse", "mae", "r2", "median_absolute_error")


def _rounded(values: dict) -> dict[str, float]:
    # Rounded to 12 digits so they read well and diff cleanly.
    return {name: round(float(value), 12) for name, value in values.items()}


def regression_scores(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R² and the median absolute error of predicted values."""
    y_true, predicted = np.asarray(y_true, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    return _rounded(
        dict(
            zip(
                REGRESSION_METRICS,
                (
                    metrics.root_mean_squared_error(y_true, predicted),
                    metrics.mean_absolute_error(y_true, predicted),
                    metrics.r2_score(y_true, predicted),
                    metrics.median_absolute_error(y_true, predicted),
                ),
                strict=True,
            )
        )
    )


def scores(
    y_true: np.ndarray, probabilities: np.ndarray, classes: list, threshold: float, task: str | None = None
) -> dict[str, float]:
    """The metrics. `probabilities` has one column per class, in the recorded order.

    For a regression (`task`), the predicted values instead (model_outputs).
    """
    if task == REGRESSION:
        return regression_scores(y_true, probabilities)
    if is_binary(classes):
        positive = (np.asarray(y_true) == classes[1]).astype(int)
        probability = probabilities[:, 1]
        label = (probability >= threshold).astype(int)
        return _rounded(
            {
                "roc_auc": metrics.roc_auc_score(positive, probability),
                "average_precision": metrics.average_precision_score(positive, probability),
                "log_loss": metrics.log_loss(positive, probability, labels=[0, 1]),
                "brier": metrics.brier_score_loss(positive, probability),
                "accuracy": metrics.accuracy_score(positive, label),
                "f1": metrics.f1_score(positive, label, zero_division=0),
            }
        )
    # Not dtype=object: scikit-learn cannot tell the task of an object array of integers ("unknown").
    predicted = np.asarray(classes)[np.argmax(probabilities, axis=1)]
    return _rounded(
        {
            "roc_auc_ovr": metrics.roc_auc_score(y_true, probabilities, multi_class="ovr", labels=classes),
            "log_loss": metrics.log_loss(y_true, probabilities, labels=classes),
            "accuracy": metrics.accuracy_score(y_true, predicted),
            "f1_macro": metrics.f1_score(y_true, predicted, labels=classes, average="macro", zero_division=0),
        }
    )
