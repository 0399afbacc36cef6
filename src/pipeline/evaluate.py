"""Stage `evaluate`: test-set metrics, plots and predictions through dvclive.

dvclive is configured so that nothing in its output depends on the moment or
the machine: no timestamps, no rewriting of dvc.yaml (metrics and plots are
declared there by hand), and no experiment refs when the script runs by hand.
It writes its files in place, one by one, so it writes into a temporary
directory inside eval/ whose complete results are then renamed into place
(staged): a killed run leaves the old outputs or none, never a half-written one.

Two classes get the binary metrics and curves. More classes get accuracy,
macro-F1, log loss and one-vs-rest ROC AUC; their ROC, precision-recall and
calibration curves are micro-averaged one-vs-rest (every row and class as one
yes/no decision), so the plots that dvc.yaml declares exist in both cases.
The plots page embeds every data point, so each plot file stays small: the
curves are thinned to at most CURVE_POINTS points each (scikit-learn gives one
per distinct score), and the confusion matrix is written as one count per cell
rather than one row per test row.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from dvclive import Live
from sklearn import metrics
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance
from threadpoolctl import threadpool_limits

from src.pipeline import artifact, config, files
from src.pipeline.model import count_unknown, thread_limits
from src.pipeline.params import ParamsError, check_recorded, load_adapter, load_params
from src.pipeline.predictions import is_binary, predictions_frame, predictions_schema
from src.pipeline.scoring import scores


def curve_inputs(y_true: np.ndarray, probabilities: np.ndarray, classes: list) -> tuple[np.ndarray, np.ndarray]:
    """(0/1 truth, score) for the ROC, PR and calibration curves: the positive class, or micro-averaged."""
    if is_binary(classes):
        return (np.asarray(y_true) == classes[1]).astype(int), probabilities[:, 1]
    onehot = (np.asarray(y_true, dtype=object)[:, None] == np.asarray(classes, dtype=object)[None, :]).astype(int)
    return onehot.ravel(), probabilities.ravel()


# Enough to draw a smooth curve; the example's precision-recall curve had 65,470
# points (a 13 MB plots page) before thinning.
CURVE_POINTS = 1000
# Six decimals are finer than a pixel, and short numbers keep the plot files small.
CURVE_DIGITS = 6


def thin(n: int, points: int = CURVE_POINTS) -> np.ndarray:
    """Indices of at most `points` of a curve's n points: the first, the last, and evenly spaced ones.

    Spaced by index rather than interpolated on a grid: every point kept is a
    point of the real curve, and integer arithmetic picks the same points on
    every machine.
    """
    if n <= points:
        return np.arange(n)
    return np.arange(points) * (n - 1) // (points - 1)


def curves(truth: np.ndarray, score: np.ndarray) -> dict[str, pd.DataFrame]:
    """The ROC, precision-recall and calibration curves, thinned and rounded, with dvclive's column names."""
    fpr, tpr, _ = metrics.roc_curve(truth, score)
    precision, recall, _ = metrics.precision_recall_curve(truth, score)
    # scikit-learn's default bins, as dvclive's calibration plot used.
    prob_true, prob_pred = calibration_curve(truth, score)
    tables = {
        "roc": {"fpr": fpr, "tpr": tpr},
        "precision_recall": {"recall": recall, "precision": precision},
        # A second series, the diagonal a perfectly calibrated model follows; named to
        # sort after prob_true, since DVC dashes the second series in name order.
        "calibration": {"prob_pred": prob_pred, "prob_true": prob_true, "well_calibrated": prob_pred},
    }
    frames = {}
    for name, columns in tables.items():
        keep = thin(len(next(iter(columns.values()))))
        frames[name] = pd.DataFrame({column: np.round(values[keep], CURVE_DIGITS)
                                     for column, values in columns.items()})
    return frames


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, classes: list) -> pd.DataFrame:
    """Every (actual, predicted) pair of classes with its count, zeros included.

    Labels are text, as in dvclive's confusion plot. dvc.yaml draws the counts
    with `confusion_counts` (.dvc/plots/), DVC's confusion template summing the
    counts instead of counting rows.
    """
    matrix = metrics.confusion_matrix(y_true, y_pred, labels=classes)
    return pd.DataFrame([{"actual": str(actual), "predicted": str(predicted), "count": int(matrix[i, j])}
                         for i, actual in enumerate(classes) for j, predicted in enumerate(classes)])


def importances(model, X: pd.DataFrame, y: pd.Series, classes: list, rows: int, repeats: int,
                seed: int) -> tuple[pd.DataFrame, str]:
    """Permutation importance (ROC AUC drop) of each input feature on a seeded sample."""
    scoring, title = ("roc_auc", "ROC AUC") if is_binary(classes) else ("roc_auc_ovr", "one-vs-rest ROC AUC")
    sample = X.sample(n=min(rows, len(X)), random_state=seed).sort_index()
    result = permutation_importance(
        model, sample, y.loc[sample.index], scoring=scoring, n_repeats=repeats, random_state=seed, n_jobs=1
    )
    frame = pd.DataFrame({"feature": list(X.columns), "importance": np.round(result.importances_mean, 12)}) \
        .sort_values(["importance", "feature"], ascending=[False, True], kind="stable")
    return frame, title


# dvclive's temporary directories: `.live.<random>.tmp` inside eval/, so the
# renames that put the outputs in place never cross a file system.
STAGING_PREFIX, STAGING_SUFFIX = ".live.", ".tmp"


def remove_stale_staging(directory: Path) -> list[Path]:
    """Delete the temporary directories that a killed run left in `directory`; return them."""
    stale = [path for path in Path(directory).glob(f"{STAGING_PREFIX}*{STAGING_SUFFIX}")
             if path.is_dir() and not path.is_symlink()]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


@contextlib.contextmanager
def staged(directory: Path) -> Iterator[Path]:
    """Yield an empty temporary directory inside `directory`; on success, move what it holds into `directory`.

    Each entry replaces the one of the same name by rename: a file with one
    atomic rename, a folder by moving the old one aside into the temporary
    directory first (a folder cannot be renamed over a non-empty one), so
    between the two renames it is absent, never partly written. Folders go
    first and files last, so metrics.json appears only when the plots have.
    On failure nothing is moved; either way the temporary directory (with any
    old folder) is deleted, and a killed run's is deleted by the next run.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(directory)
    temporary = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, suffix=STAGING_SUFFIX, dir=directory))
    try:
        yield temporary
        entries = sorted(temporary.iterdir(), key=lambda path: (not path.is_dir(), path.name))
        for entry in entries:
            target = directory / entry.name
            if os.path.lexists(target) and (entry.is_dir() or (target.is_dir() and not target.is_symlink())):
                target.rename(temporary / f"{STAGING_PREFIX}old-{entry.name}")
            entry.replace(target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def main() -> None:
    params = load_params()
    adapter, _ = load_adapter(params)
    check_recorded(params, adapter)
    classes = params.classes
    started = time.perf_counter()
    # Unpickled only once dvc.lock vouches for the model and manifest: DVC
    # records the train stage's outputs before evaluate runs, so a model
    # swapped in (with a manifest edited to match) is refused, not executed.
    model, manifest = artifact.load_model(config.MODEL, config.MANIFEST, lock_path=config.DVC_LOCK)
    if list(model.classes_) != classes:
        raise ValueError(f"the model's classes {list(model.classes_)} are not params.yaml's {classes}: "
                         "run `dvc repro train`")
    test = files.read_frame(config.TEST_FEATURES)
    if test.empty:
        raise ValueError(f"{config.TEST_FEATURES} has no rows")
    X, y = test[manifest["features"]], test[adapter.target].to_numpy()
    threshold = params.evaluate.threshold
    # The limits train used: predictions do not depend on the machine's thread count.
    with threadpool_limits(limits=thread_limits(config.threads())):
        probabilities = model.predict_proba(X)
        importance, title = importances(model, X, test[adapter.target], classes, params.evaluate.importance_rows,
                                          params.evaluate.importance_repeats, params.seed)
    predictions = predictions_frame(adapter.id, test[adapter.id], probabilities, classes, threshold)
    files.write_frame(config.PREDICTIONS, predictions, predictions_schema(adapter.id, classes, adapter.target_type))

    truth, score = curve_inputs(y, probabilities, classes)
    with staged(config.EVAL_DIR) as live_dir, \
            Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        for name, value in scores(y, probabilities, classes, threshold).items():
            live.log_metric(name, value, plot=False)
        live.log_metric("rows/test", int(len(test)), plot=False)
        if is_binary(classes):
            live.log_metric("rows/positive", int((y == classes[1]).sum()), plot=False)
        else:
            for label in classes:
                live.log_metric(f"rows/class/{label}", int((y == label).sum()), plot=False)
        for column, counts in count_unknown(X, params.categories).items():
            for kind, count in counts.items():
                live.log_metric(f"{kind}_categories/{column}", count, plot=False)
        # `dvc plots show` takes titles and axis labels from dvc.yaml's `plots:`
        # (dvclive does not write that file); these say the same for dvclive's API.
        curve = curves(truth, score)
        live.log_plot("roc", curve["roc"], x="fpr", y="tpr", template="simple", title="ROC",
                      x_label="False positive rate", y_label="True positive rate")
        live.log_plot("precision_recall", curve["precision_recall"], x="recall", y="precision",
                      template="simple", title="Precision-Recall", x_label="Recall", y_label="Precision")
        live.log_plot("calibration", curve["calibration"], x="prob_pred", y=["prob_true", "well_calibrated"],
                      template="simple", title="Calibration", x_label="Mean predicted probability",
                      y_label="Fraction of positives")
        live.log_plot("confusion_matrix", confusion_counts(y, predictions["label"].to_numpy(), classes),
                      x="actual", y="predicted", template="confusion_counts", title="Confusion matrix",
                      x_label="True label", y_label="Predicted label")
        live.log_plot("importance", importance, x="importance", y="feature",
                      template="bar_horizontal_sorted", title=f"Permutation importance ({title} drop)")
    print(f"evaluate: {len(test)} test rows, {len(classes)} classes ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, ValueError, FileNotFoundError, artifact.ArtifactError) as error:
        sys.exit(f"evaluate: error: {error}")
