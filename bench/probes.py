"""The physical references and the predict benchmark, one per process.

    python bench/probes.py NAME   (run with the clone as working directory and
                                   on PYTHONPATH, so `src` is the clone's)

Each reference does the least work that moves the same data the stage moves,
with the same libraries (SQLAlchemy on gather's own read-only engine, Arrow),
so a stage's ratio to it is the stage's own overhead:

- bare_scan:    as many rows as the snapshot has, read by a plain SELECT in
                physical order from the active adapter's entity table (the
                source table that holds the adapter's id column; the first
                declared table if none does), into Arrow;
- query_scan:   the adapter's snapshot query itself, rows discarded (no
                conversion, no Parquet): how much of gather is SQL;
- gather_rows:  gather as it was before the Arrow-native read (SQLAlchemy rows,
                column by column into Arrow, the same Parquet writer), kept
                here so that the stage's read path is measured against it on
                the same source; it reports whether it wrote the stage's bytes;
- bare_parquet: read the snapshot Parquet file and write it again with the
                project's writer options (featurize's reference);
- bare_fit:     the configured estimator alone, fitted on the training
                features (categories as integer codes), same threads;
- predict:      single-row latency and batch throughput of the deployed model;
- serve:        the HTTP service under load against predict_proba on one row
                in process (bench/serving.py);
- load_history: not a reference but set-up, timed all the same: copy the demo
                source's declared tables into the (PostgreSQL) database that
                SOURCE_URL names, with the project's own copy (history.py).

The last line printed is RESULT_PREFIX followed by a JSON object of what the
probe counted; bench/run.py reads it from there.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from src.pipeline import config, files
from src.pipeline.adapter import Adapter
from src.pipeline.dataset import load_adapter
from src.pipeline.params import load_params
from src.pipeline.source import readers
from src.pipeline.source.moments import TIME_FORMAT
from src.pipeline.source.url import parse_url

RESULT_PREFIX = "BENCH-RESULT "
SQL_CHUNK_ROWS = 50_000


def open_source(url: str) -> sa.Engine:
    """A SQLAlchemy engine on the source, as gather's row-by-row path opens it (SQLite read-only)."""
    return readers.open_source(parse_url(url))


def _snapshot_rows() -> int:
    return pq.ParquetFile(config.SNAPSHOT).metadata.num_rows


def bare_scan() -> dict:
    params = load_params()
    chunk_rows = params.gather.chunk_rows
    adapter = load_adapter(params)[0]
    table = adapter.source_tables.tables[adapter.entity_table]
    engine = open_source(config.source_url())
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=chunk_rows).execute(
            sa.select(table).limit(_snapshot_rows())
        )
        names = list(result.keys())
        batches = [
            pa.RecordBatch.from_arrays([pa.array(column) for column in zip(*rows, strict=True)], names=names)
            for rows in result.partitions(chunk_rows)
        ]
    engine.dispose()
    arrow = pa.Table.from_batches(batches)
    return {"table": table.name, "rows": arrow.num_rows, "columns": arrow.num_columns, "arrow_bytes": arrow.nbytes}


def query_scan() -> dict:
    params = load_params()
    adapter, _ = load_adapter(params)
    as_of = params.gather.moment
    engine = open_source(config.source_url())
    with engine.connect() as connection:
        started = time.perf_counter()
        result = connection.execution_options(stream_results=True, yield_per=SQL_CHUNK_ROWS).execute(
            sa.text(adapter.snapshot_query), {"as_of": as_of}
        )
        first_row = None
        rows = 0
        for chunk in result.partitions(SQL_CHUNK_ROWS):
            if first_row is None:
                first_row = time.perf_counter() - started
            rows += len(chunk)
        sql_s = time.perf_counter() - started
    engine.dispose()
    return {"rows": rows, "first_row_s": first_row, "sql_s": sql_s}


def _rows_to_arrow(columns: list[str], rows: list, schema: pa.Schema) -> pa.Table:
    """One chunk of SQLAlchemy rows as Arrow with the snapshot's schema: gather's conversion before ADBC."""
    values = dict(zip(columns, zip(*rows, strict=True), strict=True)) if rows else {name: () for name in columns}
    arrays = []
    for field in schema:
        array = pa.array(values[field.name], from_pandas=False)
        if pa.types.is_timestamp(field.type):
            array = pc.strptime(array.cast(pa.string()), format=TIME_FORMAT, unit="us")
        arrays.append(array.cast(field.type, safe=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def gather_rows() -> dict:
    params = load_params()
    adapter, _ = load_adapter(params)
    chunk_rows = params.gather.chunk_rows
    engine = open_source(config.source_url())

    def chunks():
        with engine.connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=chunk_rows).execute(
                sa.text(adapter.snapshot_query), {"as_of": params.gather.moment}
            )
            columns = list(result.keys())
            for rows in result.partitions(chunk_rows):
                yield _rows_to_arrow(columns, rows, adapter.snapshot_schema)

    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "snapshot.parquet"
        try:
            rows = files.write_parquet(output, chunks(), adapter.snapshot_schema)
        finally:
            engine.dispose()
        same = config.SNAPSHOT.exists() and files.file_digest(output) == files.file_digest(config.SNAPSHOT)
    return {
        "rows": rows,
        "same_bytes_as_stage": same,
        "source": sa.engine.make_url(config.source_url()).get_backend_name(),
    }


def bare_parquet() -> dict:
    table = pq.read_table(config.SNAPSHOT)
    with tempfile.TemporaryDirectory() as scratch:
        pq.write_table(table, Path(scratch) / "copy.parquet", **files.PARQUET_OPTIONS)
    return {"rows": table.num_rows, "snapshot_arrow_bytes": table.nbytes}


def _matrix(frame, adapter: Adapter, categories: dict[str, list[str]]):
    """Features as one float matrix: categories as codes of the recorded lists (-1 -> NaN)."""
    import pandas as pd

    columns = {}
    for name in adapter.categorical:
        codes = pd.Categorical(frame[name], categories=categories[name]).codes.astype("float64")
        codes[codes < 0] = np.nan
        columns[name] = codes
    for name in adapter.numeric:
        columns[name] = frame[name].to_numpy(dtype="float64")
    return np.column_stack([columns[name] for name in adapter.features])


def bare_fit() -> dict:
    from threadpoolctl import threadpool_limits

    from src.pipeline import model

    params = load_params()
    adapter, _ = load_adapter(params)
    frame = files.read_frame(config.TRAIN_FEATURES)
    X, y = _matrix(frame, adapter, params.categories), frame[adapter.target].to_numpy()
    name = params.train.model if params.train.model != "stacking" else "hist_gradient_boosting"
    if name != "hist_gradient_boosting":
        X = np.where(np.isnan(X), np.nanmedian(X, axis=0), X)  # only HGB takes NaN
    # The same threads as train: the machine's setting (config.threads).
    threads = config.threads()
    estimator = model._estimator(name, params.train, params.seed, threads)
    with threadpool_limits(limits=model.thread_limits(threads)):
        estimator.fit(X, y)
    return {"rows": len(frame), "estimator": name, "threads": threads}


def predict(single_calls: int = 300, warmup: int = 20, batch_repeats: int = 3) -> dict:
    """Single-row latency (p50, p99) and whole-test-set throughput of the deployed model."""
    from src.serving import predict as api

    deployed = api.load_model()
    target = load_adapter(load_params())[0].target
    frame = files.read_frame(config.TEST_FEATURES).drop(columns=[target])
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(frame), size=single_calls + warmup)
    latencies = []
    for index, row in enumerate(picks):
        one = frame.iloc[[row]]
        started = time.perf_counter()
        deployed.predict(one)
        if index >= warmup:
            latencies.append(time.perf_counter() - started)
    batches = []
    for _ in range(batch_repeats):
        started = time.perf_counter()
        deployed.predict(frame)
        batches.append(time.perf_counter() - started)
    return {
        "api": "src.serving.predict.load_model().predict(frame)",
        "single_latencies_s": latencies,
        "batch_rows": len(frame),
        "batch_walls_s": batches,
    }


def load_history() -> dict:
    """Copy the demo source's declared tables into the database SOURCE_URL names, the way `source --url` does.

    Through src.pipeline.source.copy.copy_tables (COPY into PostgreSQL, indexes
    afterwards, ANALYZE), from the demo file already built: no second build.
    """
    from src.pipeline.source.copy import copy_tables

    adapter, _ = load_adapter(load_params())
    copied = copy_tables(f"sqlite:///{config.SOURCE_DB.resolve()}", config.source_url(), adapter.source_tables)
    return {"rows": sum(copied.values()), "tables": copied}


def serve() -> dict:
    from bench import serving

    return serving.serve()


PROBES = {
    "bare_scan": bare_scan,
    "query_scan": query_scan,
    "gather_rows": gather_rows,
    "bare_parquet": bare_parquet,
    "bare_fit": bare_fit,
    "predict": predict,
    "serve": serve,
    "load_history": load_history,
}


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in PROBES:
        sys.exit(f"usage: probes.py {{{','.join(PROBES)}}}")
    print(RESULT_PREFIX + json.dumps(PROBES[sys.argv[1]]()), flush=True)


if __name__ == "__main__":
    main()
