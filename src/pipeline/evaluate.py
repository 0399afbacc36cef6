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
per distinct score), and the confusion matrix and score histogram are written
as one count per cell or bin rather than one row per test row.

Each curve's rows carry the figure a reader checks it against (`curve`: the
AUC or AP of the whole, unthinned curve; the PR curve's `baseline`, the
prevalence), because DVC's templates can only draw what is in the data: the
templates in .dvc/plots/ put them in the legend and draw the chance diagonal
and the prevalence line.

A regression (a float target, Adapter.task) gets RMSE, MAE, R² and the median
absolute error, and three plots: predicted against actual (with the diagonal
of a perfect model), residuals against predicted, and permutation importance
(RMSE rise). Its predictions are [id, prediction].
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
from src.pipeline.adapter import CLASSIFICATION, REGRESSION
from src.pipeline.dataset import check_recorded, check_target_values, load_adapter
from src.pipeline.model import count_unknown, thread_limits
from src.pipeline.params import ParamsError, load_params
from src.pipeline.predictions import PREDICTION, is_binary, model_outputs, predictions_frame, predictions_schema
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


# Quantile bins hold equally many rows each, so no bin's fraction rests on a few
# rows at a sparse end of the score range (uniform bins did, with 5 of them).
CALIBRATION_BINS = 10


def curves(truth: np.ndarray, score: np.ndarray, averaged: bool = False) -> dict[str, pd.DataFrame]:
    """The ROC, precision-recall and calibration curves, thinned and rounded, with dvclive's column names.

    `averaged`: the inputs are micro-averaged one-vs-rest, and the legends say so.
    """
    fpr, tpr, _ = metrics.roc_curve(truth, score)
    precision, recall, _ = metrics.precision_recall_curve(truth, score)
    prob_true, prob_pred = calibration_curve(truth, score, n_bins=CALIBRATION_BINS, strategy="quantile")
    prefix = "micro-average " if averaged else ""
    # Of the full curves (for two classes, evaluate's roc_auc and average_precision):
    # the thinned points are for drawing only.
    auc = metrics.roc_auc_score(truth, score)
    average_precision = metrics.average_precision_score(truth, score)
    prevalence = float(np.mean(truth))
    tables = {
        "roc": ({"fpr": fpr, "tpr": tpr}, {"curve": f"{prefix}AUC {auc:.4f}"}),
        "precision_recall": (
            {"recall": recall, "precision": precision},
            {"curve": f"{prefix}AP {average_precision:.4f}", "baseline": round(prevalence, CURVE_DIGITS)},
        ),
        "calibration": (
            {"prob_pred": prob_pred, "prob_true": prob_true},
            {"curve": f"{prefix}{CALIBRATION_BINS} quantile bins"},
        ),
    }
    frames = {}
    for name, (columns, constants) in tables.items():
        keep = thin(len(next(iter(columns.values()))))
        frame = pd.DataFrame({column: np.round(values[keep], CURVE_DIGITS) for column, values in columns.items()})
        frames[name] = frame.assign(**constants)
    return frames


# Bins of the score histogram: 20 of width 0.05 on [0, 1].
HISTOGRAM_BINS = 20


def score_histogram(y_true: np.ndarray, probabilities: np.ndarray, classes: list) -> pd.DataFrame:
    """Per actual class, the share of its rows in each score bin (and their count).

    The score is the positive class's probability for two classes (the one the
    threshold cuts), and otherwise the probability given to the row's own
    class. Shares, not counts, are drawn, so a rare class's shape shows next
    to a common one's.
    """
    y_true = np.asarray(y_true, dtype=object)
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    rows = []
    for index, label in enumerate(classes):
        own = y_true == label
        score = probabilities[own, 1 if is_binary(classes) else index]
        counts, _ = np.histogram(score, bins=edges)
        total = max(int(own.sum()), 1)
        rows += [
            {
                "class": str(label),
                "bin_start": round(float(edges[i]), CURVE_DIGITS),
                "bin_end": round(float(edges[i + 1]), CURVE_DIGITS),
                "share": round(int(count) / total, CURVE_DIGITS),
                "count": int(count),
            }
            for i, count in enumerate(counts)
        ]
    return pd.DataFrame(rows)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, classes: list) -> pd.DataFrame:
    """Every (actual, predicted) pair of classes with its count, zeros included.

    Labels are text, as in dvclive's confusion plot. dvc.yaml draws the counts
    with `confusion_counts` (.dvc/plots/), DVC's confusion template summing the
    counts instead of counting rows.
    """
    matrix = metrics.confusion_matrix(y_true, y_pred, labels=classes)
    return pd.DataFrame(
        [
            {"actual": str(actual), "predicted": str(predicted), "count": int(matrix[i, j])}
            for i, actual in enumerate(classes)
            for j, predicted in enumerate(classes)
        ]
    )


def fit_points(y_true: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """A regression's test rows for its two plots: actual, predicted and residual (actual - predicted).

    At most CURVE_POINTS rows, spaced evenly in the test set's id order (thin),
    so the page stays small and the same rows are kept on every machine.
    """
    y_true, predicted = np.asarray(y_true, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    keep = thin(len(y_true))
    return pd.DataFrame(
        {
            "actual": np.round(y_true[keep], CURVE_DIGITS),
            "predicted": np.round(predicted[keep], CURVE_DIGITS),
            "residual": np.round(y_true[keep] - predicted[keep], CURVE_DIGITS),
        }
    )


def importances(
    model, X: pd.DataFrame, y: pd.Series, classes: list, rows: int, repeats: int, seed: int, task: str | None = None
) -> tuple[pd.DataFrame, str]:
    """Permutation importance (ROC AUC drop; a regression's RMSE rise) of each input feature on a seeded sample."""
    if task == REGRESSION:
        scoring, title = "neg_root_mean_squared_error", "RMSE"
    else:
        scoring, title = ("roc_auc", "ROC AUC") if is_binary(classes) else ("roc_auc_ovr", "one-vs-rest ROC AUC")
    sample = X.sample(n=min(rows, len(X)), random_state=seed).sort_index()
    result = permutation_importance(
        model, sample, y.loc[sample.index], scoring=scoring, n_repeats=repeats, random_state=seed, n_jobs=1
    )
    frame = pd.DataFrame({"feature": list(X.columns), "importance": np.round(result.importances_mean, 12)}).sort_values(
        ["importance", "feature"], ascending=[False, True], kind="stable"
    )
    return frame, title


# dvclive's temporary directories: `.live.<random>.tmp` inside eval/, so the
# renames that put the outputs in place never cross a file system.
STAGING_PREFIX, STAGING_SUFFIX = ".live.", ".tmp"


def remove_stale_staging(directory: Path) -> list[Path]:
    """Delete the temporary directories that a killed run left in `directory`; return them."""
    stale = [
        path
        for path in Path(directory).glob(f"{STAGING_PREFIX}*{STAGING_SUFFIX}")
        if path.is_dir() and not path.is_symlink()
    ]
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


# The files under eval/plots/custom/ that each task writes (dvc.yaml declares them all; a test checks).
PLOTS = {
    CLASSIFICATION: ("roc", "precision_recall", "calibration", "confusion_matrix", "importance", "scores"),
    REGRESSION: ("predicted_actual", "residuals", "importance"),
}


def log_metrics(
    live: Live,
    y: np.ndarray,
    probabilities: np.ndarray,
    classes: list,
    threshold: float,
    X: pd.DataFrame,
    categories: dict,
    task: str | None = None,
) -> None:
    """Everything eval/metrics.json holds, logged in its order (notebooks/explore.py logs the same)."""
    for name, value in scores(y, probabilities, classes, threshold, task).items():
        live.log_metric(name, value, plot=False)
    live.log_metric("rows/test", int(len(y)), plot=False)
    if is_binary(classes):  # (a regression has no classes, and no per-class counts)
        live.log_metric("rows/positive", int((y == classes[1]).sum()), plot=False)
    else:
        for label in classes:
            live.log_metric(f"rows/class/{label}", int((y == label).sum()), plot=False)
    for column, counts in count_unknown(X, categories).items():
        for kind, count in counts.items():
            live.log_metric(f"{kind}_categories/{column}", count, plot=False)


def log_curves(live: Live, y: np.ndarray, probabilities: np.ndarray, classes: list) -> None:
    """The ROC, precision-recall and calibration plots (micro-averaged for more than two classes)."""
    curve = curves(*curve_inputs(y, probabilities, classes), averaged=not is_binary(classes))
    live.log_plot(
        "roc",
        curve["roc"],
        x="fpr",
        y="tpr",
        template="roc",
        title="ROC",
        x_label="False positive rate",
        y_label="True positive rate",
    )
    live.log_plot(
        "precision_recall",
        curve["precision_recall"],
        x="recall",
        y="precision",
        template="precision_recall",
        title="Precision-Recall",
        x_label="Recall",
        y_label="Precision",
    )
    live.log_plot(
        "calibration",
        curve["calibration"],
        x="prob_pred",
        y="prob_true",
        template="calibration",
        title="Calibration",
        x_label="Mean predicted probability",
        y_label="Fraction of positives",
    )


def log_plots(
    live: Live,
    y: np.ndarray,
    probabilities: np.ndarray,
    labels: np.ndarray,
    classes: list,
    importance: pd.DataFrame,
    importance_title: str,
) -> None:
    """Every file under eval/plots/custom/, one per plot that dvc.yaml declares.

    `dvc plots show` takes titles, axis labels and templates from dvc.yaml's
    `plots:` (dvclive does not write that file); these say the same for dvclive's API.
    """
    log_curves(live, y, probabilities, classes)
    live.log_plot(
        "confusion_matrix",
        confusion_counts(y, labels, classes),
        x="actual",
        y="predicted",
        template="confusion_counts",
        title="Confusion matrix",
        x_label="True label",
        y_label="Predicted label",
    )
    live.log_plot(
        "importance",
        importance,
        x="importance",
        y="feature",
        template="importance",
        title=f"Permutation importance ({importance_title} drop)",
    )
    live.log_plot(
        "scores",
        score_histogram(y, probabilities, classes),
        x="bin_start",
        y="share",
        template="score_histogram",
        title="Score histogram per class",
        x_label="Predicted probability",
        y_label="Share of the class's rows",
    )


def log_regression_plots(
    live: Live, y: np.ndarray, predicted: np.ndarray, importance: pd.DataFrame, importance_title: str
) -> None:
    """A regression's files under eval/plots/custom/, as dvc.yaml declares them (the classes' plots are absent)."""
    points = fit_points(y, predicted)
    live.log_plot(
        "predicted_actual",
        points[["actual", "predicted"]],
        x="actual",
        y="predicted",
        template="predicted_actual",
        title="Predicted against actual",
        x_label="Actual",
        y_label="Predicted",
    )
    live.log_plot(
        "residuals",
        points[["predicted", "residual"]],
        x="predicted",
        y="residual",
        template="residuals",
        title="Residuals against predicted",
        x_label="Predicted",
        y_label="Residual (actual - predicted)",
    )
    live.log_plot(
        "importance",
        importance,
        x="importance",
        y="feature",
        template="importance",
        title=f"Permutation importance ({importance_title} rise)",
    )


def main() -> None:
    params = load_params()
    adapter, _ = load_adapter(params)
    check_recorded(params, adapter)
    classes, task = params.classes, adapter.task
    started = time.perf_counter()
    # Unpickled only once dvc.lock vouches for the model and manifest: DVC
    # records the train stage's outputs before evaluate runs, so a model
    # swapped in (with a manifest edited to match) is refused, not executed.
    model, manifest = artifact.load_model(config.MODEL, config.MANIFEST, lock_path=config.DVC_LOCK)
    if task != REGRESSION and list(model.classes_) != classes:
        raise ValueError(
            f"the model's classes {list(model.classes_)} are not params.yaml's {classes}: run `dvc repro train`"
        )
    test = files.read_frame(config.TEST_FEATURES)
    if test.empty:
        raise ValueError(f"{config.TEST_FEATURES} has no rows")
    if task == REGRESSION:
        check_target_values(test[adapter.target], "test")
    X, y = test[manifest["features"]], test[adapter.target].to_numpy()
    threshold = params.evaluate.threshold
    # The limits train used: predictions do not depend on the machine's thread count.
    with threadpool_limits(limits=thread_limits(config.threads())):
        outputs = model_outputs(model, X, task)  # class probabilities, or a regression's values
        importance, title = importances(
            model,
            X,
            test[adapter.target],
            classes,
            params.evaluate.importance_rows,
            params.evaluate.importance_repeats,
            params.seed,
            task,
        )
    predictions = predictions_frame(adapter.id, test[adapter.id], outputs, classes, threshold, task)
    files.write_frame(config.PREDICTIONS, predictions, predictions_schema(adapter.id, classes, adapter.target_type))

    with (
        staged(config.EVAL_DIR) as live_dir,
        Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live,
    ):
        log_metrics(live, y, outputs, classes, threshold, X, params.categories, task)
        if task == REGRESSION:
            log_regression_plots(live, y, predictions[PREDICTION].to_numpy(), importance, title)
        else:
            log_plots(live, y, outputs, predictions["label"].to_numpy(), classes, importance, title)
    target = "a regression" if task == REGRESSION else f"{len(classes)} classes"
    print(f"evaluate: {len(test)} test rows, {target} ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, ValueError, FileNotFoundError, artifact.ArtifactError) as error:
        sys.exit(f"evaluate: error: {error}")
