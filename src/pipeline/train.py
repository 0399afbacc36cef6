"""Stage `train`: fit the pipeline that params.yaml declares; write model and manifest."""

from __future__ import annotations

import hashlib
import json
import sys
import time

import pandas as pd
from threadpoolctl import threadpool_limits

from src.pipeline import artifact, config, crossval, files, selection
from src.pipeline.adapter import REGRESSION, UNKNOWN, Adapter
from src.pipeline.dataset import check_classes, check_recorded, load_adapter
from src.pipeline.model import (
    build_pipeline,
    count_unknown,
    fitted_state,
    normalise_threads,
    seeds,
    structure,
    thread_limits,
)
from src.pipeline.params import Params, ParamsError, load_params


def params_digest(params: Params) -> str:
    """SHA-256 of the params this model depends on, in canonical JSON."""
    # Not cv_folds: the validation estimate is fitted apart, and the model does not depend on it.
    # Nor feature_selection when it is off: its other keys then change nothing.
    unused = {"cv_folds"} | ({"feature_selection"} if params.train.feature_selection.method == "none" else set())
    used = {
        "seed": params.seed,
        "train": params.train.model_dump(exclude=unused),
        "categories": params.categories,
        "classes": params.classes,
    }
    return hashlib.sha256(json.dumps(used, sort_keys=True).encode()).hexdigest()


def check_numeric(frame: pd.DataFrame, numeric: tuple[str, ...]) -> None:
    """Refuse a numeric feature with no value at all: imputation would drop it and shift every later column."""
    empty = [name for name in numeric if frame[name].isna().all()]
    if empty:
        raise ValueError(
            f"numeric features {empty} have no value in the training data: fix the source or "
            "derive_features, or drop them from the adapter's numeric features"
        )


def unknown_warning(X: pd.DataFrame, categories: dict[str, list[str]]) -> str | None:
    """A warning naming each feature whose training values are off its recorded list: how many rows, which values.

    Such rows are encoded as the unknown bucket, as a value never seen would
    be at prediction time: right for a rare value left out on purpose, silent
    drift when a value was dropped from the list by mistake. None when no row is.
    """
    parts = []
    for name, values in categories.items():
        off = X[name][X[name].notna() & ~X[name].isin(values)]
        if len(off):
            common = off.astype(str).value_counts().sort_index().sort_values(ascending=False, kind="stable")
            shown = ", ".join(f"{value!r} {count:,}" for value, count in common.head(3).items())
            parts.append(f"{name}: {len(off):,} of {len(X):,} rows ({shown}{', ...' if len(common) > 3 else ''})")
    if not parts:
        return None
    return (
        "train: warning: training values not on params.yaml's recorded categories go to the unknown bucket: "
        + "; ".join(parts)
        + ". If a value was dropped by mistake, `make categories` records the lists again."
    )


def build_manifest(
    params: Params, adapter: Adapter, model, model_sha256: str, train_sha256: str, train_rows: int, unknown
) -> dict:
    return {
        "model_file": config.MODEL.name,
        "model_sha256": model_sha256,
        "pickle_protocol": artifact.PICKLE_PROTOCOL,
        "training_data": {
            "file": str(config.TRAIN_FEATURES.relative_to(config.ROOT)),
            "sha256": train_sha256,
            "rows": train_rows,
            "unknown_categories": unknown,
        },
        "params_sha256": params_digest(params),
        "dataset": adapter.name,
        "title": adapter.title,
        "id": adapter.id,
        "target": adapter.target,
        "classes": params.classes,
        "target_type": str(adapter.target_type),  # pyarrow's alias: int8, int64, string
        # The order the pipeline was fitted with; callers' columns are put in it.
        "features": list(adapter.features),
        "categorical": list(adapter.categorical),
        "numeric": list(adapter.numeric),
        # What serving accepts for each numeric feature (the adapter's meanings).
        "ranges": {
            name: list(adapter.feature_ranges[name]) for name in adapter.numeric if name in adapter.feature_ranges
        },
        "categories": params.categories,
        "unknown_category": UNKNOWN,
        "impute_strategy": params.train.impute_strategy,
        "learned": fitted_state(model),
        "model": structure(params.train),
        "seed": params.seed,
        # Where the seed goes, read from the fitted estimators (docs/reproducibility.md).
        "seeds": seeds(model),
        "validation": {
            "file": str(config.VALIDATION_METRICS.relative_to(config.ROOT)),
            "folds": params.train.cv_folds,
            "seed": params.seed,
        },
        "versions": artifact.runtime_versions(),
        # Only with a selection step: the default's manifest has no such key.
        **({"feature_selection": selected} if (selected := selection.record(model)) else {}),
    }


def validate(model, X: pd.DataFrame, y: pd.Series, params: Params, threads: int, task: str | None = None) -> dict:
    """The validation estimate of unfitted `model` (separate clones) on the training rows only."""
    per_fold = crossval.cross_validate(
        model, X, y, params.classes, params.train.cv_folds, params.seed, params.evaluate.threshold, threads, task
    )
    return crossval.summarise(per_fold, len(X))


def main() -> None:
    params = load_params()
    adapter, _ = load_adapter(params)
    check_recorded(params, adapter)
    started = time.perf_counter()
    frame = files.read_frame(config.TRAIN_FEATURES)
    if frame.empty:
        raise ValueError(f"{config.TRAIN_FEATURES} has no rows")
    X, y = frame[list(adapter.features)], frame[adapter.target]
    check_classes(y, params.classes, adapter.task)
    check_numeric(X, adapter.numeric)
    warning = unknown_warning(X, params.categories)
    if warning:
        print(warning, file=sys.stderr)
    threads = config.threads()
    model = build_pipeline(params.train, params.categories, adapter.numeric, params.seed, threads, adapter.task)
    # Before the fit below: clones of the unfitted pipeline, and a bad cv_folds stops here.
    validation = validate(model, X, y, params, threads, adapter.task)
    validated = time.perf_counter()
    # The machine's threads where the result does not depend on them, one where
    # it does (thread_limits); the counts the fit leaves in the model are reset,
    # so the pickle is the same on any machine. Not in the manifest for that reason.
    with threadpool_limits(limits=thread_limits(threads)):
        model.fit(X, y)
    model_sha256 = artifact.save_model(normalise_threads(model), config.MODEL)
    manifest = build_manifest(
        params,
        adapter,
        model,
        model_sha256,
        files.file_digest(config.TRAIN_FEATURES),
        len(frame),
        count_unknown(X, params.categories),
    )
    files.write_json(config.MANIFEST, manifest)
    files.write_json(config.VALIDATION_METRICS, validation)
    target = "a regression" if adapter.task == REGRESSION else f"{len(params.classes)} classes"
    print(
        f"train: {params.train.model} on {len(frame)} rows, {target}, "
        f"{threads} thread{'s' * (threads != 1)} ({params.train.cv_folds}-fold validation "
        f"{validated - started:.1f} s, fit {time.perf_counter() - validated:.1f} s)"
    )


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, ValueError, FileNotFoundError) as error:
        sys.exit(f"train: error: {error}")
