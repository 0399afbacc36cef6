"""The physical references and the predict benchmark, one per process.

    python bench/probes.py NAME   (run with the clone as working directory and
                                   on PYTHONPATH, so `src` is the clone's)

Each reference does the least work that moves the same data the stage moves,
with the same libraries, so a stage's ratio to it is the stage's own overhead:

- bare_scan:    the snapshot's row count of the flights table, plain SELECT in
                physical order, through the sqlite3 module into Arrow;
- query_scan:   the snapshot query itself through sqlite3, rows discarded
                (no conversion, no Parquet): how much of gather is SQL;
- bare_parquet: read the snapshot Parquet file and write it again with the
                project's writer options (featurize's reference);
- bare_fit:     the configured estimator alone, fitted on the training
                features (categories as integer codes), same threads;
- predict:      single-row latency and batch throughput of the deployed model.

The last line printed is `BENCH-RESULT {json}` with what the probe counted.
"""
from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from src.pipeline import config, files
from src.datasets import flights as dataset
from src.pipeline.params import as_of_timestamp, load_params

RESULT_PREFIX = "BENCH-RESULT "


def _source_database() -> str:
    url = config.source_url()
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise SystemExit(f"probes read SQLite sources only, not {url!r}")
    return f"file:{Path(url[len(prefix):]).resolve()}?mode=ro"


def _snapshot_rows() -> int:
    return pq.ParquetFile(config.SNAPSHOT).metadata.num_rows


def bare_scan() -> dict:
    rows_wanted = _snapshot_rows()
    chunk_rows = load_params().gather.chunk_rows
    connection = sqlite3.connect(_source_database(), uri=True)
    cursor = connection.execute("SELECT * FROM flights LIMIT ?", (rows_wanted,))
    names = [description[0] for description in cursor.description]
    batches = []
    while rows := cursor.fetchmany(chunk_rows):
        batches.append(pa.RecordBatch.from_arrays([pa.array(column) for column in zip(*rows)], names=names))
    table = pa.Table.from_batches(batches)
    return {"rows": table.num_rows, "columns": table.num_columns, "arrow_bytes": table.nbytes}


def query_scan() -> dict:
    as_of = as_of_timestamp(load_params().gather.as_of)
    connection = sqlite3.connect(_source_database(), uri=True)
    started = time.perf_counter()
    cursor = connection.execute(dataset.SNAPSHOT_QUERY.replace(":as_of", "?"), (as_of,) * 3)
    first_row = None
    rows = 0
    while chunk := cursor.fetchmany(50_000):
        if first_row is None:
            first_row = time.perf_counter() - started
        rows += len(chunk)
    return {"rows": rows, "first_row_s": first_row, "sql_s": time.perf_counter() - started}


def bare_parquet() -> dict:
    table = pq.read_table(config.SNAPSHOT)
    with tempfile.TemporaryDirectory() as scratch:
        pq.write_table(table, Path(scratch) / "copy.parquet", **files.PARQUET_OPTIONS)
    return {"rows": table.num_rows, "snapshot_arrow_bytes": table.nbytes}


def _matrix(frame, categories: dict[str, list[str]]):
    """Features as one float matrix: categories as codes of the recorded lists (-1 -> NaN)."""
    import pandas as pd

    columns = {}
    for name in dataset.CATEGORICAL:
        codes = pd.Categorical(frame[name], categories=categories[name]).codes.astype("float64")
        codes[codes < 0] = np.nan
        columns[name] = codes
    for name in dataset.NUMERIC:
        columns[name] = frame[name].to_numpy(dtype="float64")
    return np.column_stack([columns[name] for name in dataset.FEATURES])


def bare_fit() -> dict:
    from threadpoolctl import threadpool_limits

    from src.pipeline import model

    params = load_params()
    frame = files.read_frame(config.TRAIN_FEATURES)
    X, y = _matrix(frame, params.categories), frame[dataset.TARGET].to_numpy()
    name = params.train.model if params.train.model != "stacking" else "hist_gradient_boosting"
    if name != "hist_gradient_boosting":
        X = np.where(np.isnan(X), np.nanmedian(X, axis=0), X)  # only HGB takes NaN
    estimator = model._estimator(name, params.train, params.seed)
    with threadpool_limits(limits=params.train.threads):
        estimator.fit(X, y)
    return {"rows": len(frame), "estimator": name}


def predict(single_calls: int = 300, warmup: int = 20, batch_repeats: int = 3) -> dict:
    """Single-row latency (p50, p99) and whole-test-set throughput of the deployed model."""
    test = files.read_frame(config.TEST_FEATURES)
    try:
        from src.serving import predict as api  # the deployment API, where it exists

        deployed = api.load_model()
        call, how = deployed.predict, "src.serving.predict.load_model().predict(frame)"
        frame = test.drop(columns=[dataset.TARGET])
    except ImportError:
        from threadpoolctl import threadpool_limits

        from src.pipeline import artifact

        loaded, manifest = artifact.load_model(config.MODEL, config.MANIFEST)

        def call(rows):
            with threadpool_limits(limits=load_params().train.threads):
                return loaded.predict_proba(rows[manifest["features"]])

        how, frame = "artifact.load_model + predict_proba", test
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(frame), size=single_calls + warmup)
    latencies = []
    for index, row in enumerate(picks):
        one = frame.iloc[[row]]
        started = time.perf_counter()
        call(one)
        if index >= warmup:
            latencies.append(time.perf_counter() - started)
    batches = []
    for _ in range(batch_repeats):
        started = time.perf_counter()
        call(frame)
        batches.append(time.perf_counter() - started)
    return {"api": how, "single_latencies_s": latencies, "batch_rows": len(frame), "batch_walls_s": batches}


PROBES = {"bare_scan": bare_scan, "query_scan": query_scan, "bare_parquet": bare_parquet, "bare_fit": bare_fit,
          "predict": predict}


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in PROBES:
        sys.exit(f"usage: probes.py {{{','.join(PROBES)}}}")
    print(RESULT_PREFIX + json.dumps(PROBES[sys.argv[1]]()), flush=True)


if __name__ == "__main__":
    main()
