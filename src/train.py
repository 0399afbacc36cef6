"""Stage `train`: fit the pipeline that params.yaml declares; write model and manifest."""
from __future__ import annotations

import hashlib
import json
import sys
import time

from threadpoolctl import threadpool_limits

from src import artifact, config, dataset, files
from src.model import build_pipeline, count_unknown, fitted_state, structure
from src.params import ParamsError, Params, load_params


def params_digest(params: Params) -> str:
    """SHA-256 of the params this model depends on, in canonical JSON."""
    used = {"seed": params.seed, "train": params.train.model_dump(), "categories": params.categories}
    return hashlib.sha256(json.dumps(used, sort_keys=True).encode()).hexdigest()


def build_manifest(params: Params, model, model_sha256: str, train_sha256: str, train_rows: int, unknown) -> dict:
    return {
        "model_file": config.MODEL.name,
        "model_sha256": model_sha256,
        "pickle_protocol": artifact.PICKLE_PROTOCOL,
        "training_data": {"file": str(config.TRAIN_FEATURES.relative_to(config.ROOT)),
                          "sha256": train_sha256, "rows": train_rows, "unknown_categories": unknown},
        "params_sha256": params_digest(params),
        "id": dataset.ID,
        "target": dataset.TARGET,
        # The order the pipeline was fitted with; callers' columns are put in it.
        "features": list(dataset.FEATURES),
        "categorical": list(dataset.CATEGORICAL),
        "numeric": list(dataset.NUMERIC),
        "categories": params.categories,
        "unknown_category": dataset.UNKNOWN,
        "impute_strategy": params.train.impute_strategy,
        "learned": fitted_state(model),
        "model": structure(params.train),
        "seed": params.seed,
        "threads": {"blas_and_openmp": params.train.threads},
        "versions": artifact.runtime_versions(),
    }


def main() -> None:
    params = load_params()
    started = time.perf_counter()
    frame = files.read_frame(config.TRAIN_FEATURES)
    if frame.empty:
        raise ValueError(f"{config.TRAIN_FEATURES} has no rows")
    X, y = frame[list(dataset.FEATURES)], frame[dataset.TARGET]
    model = build_pipeline(params.train, params.categories, params.seed)
    # BLAS and OpenMP threads are capped to the recorded count: the count is
    # stored in fitted HGB models and changes LBFGS's sums; the cap also keeps
    # parallel `dvc queue` workers from oversubscribing the cores.
    with threadpool_limits(limits=params.train.threads):
        model.fit(X, y)
    model_sha256 = artifact.save_model(model, config.MODEL)
    manifest = build_manifest(
        params, model, model_sha256, files.sha256_file(config.TRAIN_FEATURES), len(frame),
        count_unknown(X, params.categories),
    )
    files.write_json(config.MANIFEST, manifest)
    print(f"train: {params.train.model} on {len(frame)} rows ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, ValueError, FileNotFoundError) as error:
        sys.exit(f"train: error: {error}")
