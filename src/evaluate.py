"""Stage `evaluate`: test-set metrics, plots and predictions through dvclive.

dvclive is configured so that nothing in its output depends on the moment or
the machine: no timestamps, no rewriting of dvc.yaml (metrics and plots are
declared there by hand), and no experiment refs when the script runs by hand.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
from dvclive import Live
from sklearn import metrics
from sklearn.inspection import permutation_importance
from threadpoolctl import threadpool_limits

from src import artifact, config, dataset, files
from src.model import count_unknown
from src.params import ParamsError, load_params

PREDICTIONS_SCHEMA = pa.schema([(dataset.ID, pa.int64()), ("probability", pa.float64()), ("label", pa.int8())])


def predictions_frame(ids: pd.Series, probability: np.ndarray, threshold: float) -> pd.DataFrame:
    return pd.DataFrame({
        dataset.ID: np.asarray(ids, dtype=np.int64),
        "probability": np.asarray(probability, dtype=np.float64),
        "label": (np.asarray(probability) >= threshold).astype(np.int8),
    })


def scores(y_true: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float]:
    """The test metrics; rounded to 12 digits so they read well and diff cleanly."""
    label = (probability >= threshold).astype(int)
    values = {
        "roc_auc": metrics.roc_auc_score(y_true, probability),
        "average_precision": metrics.average_precision_score(y_true, probability),
        "log_loss": metrics.log_loss(y_true, probability, labels=[0, 1]),
        "brier": metrics.brier_score_loss(y_true, probability),
        "accuracy": metrics.accuracy_score(y_true, label),
        "f1": metrics.f1_score(y_true, label, zero_division=0),
    }
    return {name: round(float(value), 12) for name, value in values.items()}


def importances(model, X: pd.DataFrame, y: pd.Series, rows: int, repeats: int, seed: int) -> pd.DataFrame:
    """Permutation importance (ROC AUC drop) of each input feature on a seeded sample."""
    sample = X.sample(n=min(rows, len(X)), random_state=seed).sort_index()
    result = permutation_importance(
        model, sample, y.loc[sample.index], scoring="roc_auc", n_repeats=repeats, random_state=seed, n_jobs=1
    )
    return pd.DataFrame({"feature": list(X.columns), "importance": np.round(result.importances_mean, 12)}) \
        .sort_values(["importance", "feature"], ascending=[False, True], kind="stable")


def main() -> None:
    params = load_params()
    started = time.perf_counter()
    model, manifest = artifact.load_model(config.MODEL, config.MANIFEST)
    test = files.read_frame(config.TEST_FEATURES)
    if test.empty:
        raise ValueError(f"{config.TEST_FEATURES} has no rows")
    X, y = test[manifest["features"]], test[dataset.TARGET].to_numpy()
    threshold = params.evaluate.threshold
    with threadpool_limits(limits=params.train.threads):
        probability = model.predict_proba(X)[:, 1]
        importance = importances(model, X, test[dataset.TARGET], params.evaluate.importance_rows,
                                 params.evaluate.importance_repeats, params.seed)
    files.write_frame(config.PREDICTIONS, predictions_frame(test[dataset.ID], probability, threshold),
                      PREDICTIONS_SCHEMA)

    with Live(dir=str(config.EVAL_DIR), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        for name, value in scores(y, probability, threshold).items():
            live.log_metric(name, value, plot=False)
        live.log_metric("rows/test", int(len(test)), plot=False)
        live.log_metric("rows/positive", int(y.sum()), plot=False)
        for column, counts in count_unknown(X, params.categories).items():
            for kind, count in counts.items():
                live.log_metric(f"{kind}_categories/{column}", count, plot=False)
        live.log_sklearn_plot("roc", y, probability, name="roc.json")
        live.log_sklearn_plot("precision_recall", y, probability, name="precision_recall.json")
        live.log_sklearn_plot("confusion_matrix", y, (probability >= threshold).astype(int),
                              name="confusion_matrix.json")
        live.log_sklearn_plot("calibration", y, probability, name="calibration.json")
        live.log_plot("importance", importance, x="importance", y="feature",
                      template="bar_horizontal_sorted", title="Permutation importance (ROC AUC drop)")
    print(f"evaluate: {len(test)} test rows ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, ValueError, FileNotFoundError, artifact.ArtifactError) as error:
        sys.exit(f"evaluate: error: {error}")
