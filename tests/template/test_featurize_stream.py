"""Streaming featurize: any chunking writes the bytes that the whole snapshot at once writes.

The stage reads the snapshot in chunks, derives and splits each, and streams
the rows into two Parquet files cut into row groups of fixed size. These tests
run that path on tiny snapshots built from the active adapter's schema, with
chunk and row-group sizes small enough that ids, the split and the row groups
fall unevenly across chunks, and compare with the one-shot path: the whole
frame derived at once and written by one write_table call.
"""

from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from src.pipeline import files
from src.pipeline.featurize import Tally, featurize, featurize_file, split_chunks
from src.pipeline.ids import splitmix64
from tests.template import frames
from tests.template.frames import ADAPTER, ADAPTER_PARAMS, LEVELS

SEED, TEST_PERCENT = 5, 30


def row_local_derive(excluded_every: int = 4, n_classes: int = 2):
    """A derive_features whose every value comes from its own snapshot row, as the adapter contract asks.

    (frames.stub_derive draws values by row count, so its rows would change
    with the chunking.) Feature rows in id order; categorical and numeric
    gaps; every class; ids divisible by `excluded_every` excluded and counted.
    """
    labels = frames.classes(n_classes)

    def derive(snapshot: pd.DataFrame, _params) -> tuple[pd.DataFrame, dict[str, int]]:
        ids = snapshot[ADAPTER.id].to_numpy(dtype=np.int64)
        kept = np.sort(ids[ids % excluded_every != 0])
        with np.errstate(over="ignore"):
            noise = (splitmix64(kept.astype(np.uint64)) % np.uint64(1000)).astype(np.float64) / 1000.0
        rows = pd.DataFrame({ADAPTER.id: kept})
        for offset, name in enumerate(ADAPTER.categorical):
            values = pd.Series(np.asarray(LEVELS, dtype=object)[(kept + offset) % len(LEVELS)], dtype=object)
            rows[name] = values.where(kept % 11 != 5, None)
        for name in ADAPTER.numeric:
            low, high = ADAPTER.feature_ranges.get(name, (None, None))
            if low is not None and high is not None:
                rows[name] = low + noise * (high - low)
            elif low is not None:
                rows[name] = low + noise * 10.0
            elif high is not None:
                rows[name] = high - noise * 10.0
            else:
                rows[name] = noise * 10.0 - 5.0
        if ADAPTER.numeric:
            rows.loc[kept % 7 == 3, ADAPTER.numeric[-1]] = np.nan
        target = pd.Series(np.asarray(labels, dtype=object)[(kept // 3) % n_classes])
        rows[ADAPTER.target] = target.astype(ADAPTER.target_type.to_pandas_dtype())
        return rows[ADAPTER.features_schema.names], {"excluded_divisible": int(len(ids) - len(kept))}

    return derive


def write_snapshot(path, table: pa.Table, row_group_rows: int = 50) -> None:
    """As gather writes it: the adapter's schema, one row group per chunk of rows."""
    chunks = [table.slice(start, row_group_rows) for start in range(0, table.num_rows, row_group_rows)]
    files.write_parquet(path, chunks, ADAPTER.snapshot_schema)


def one_shot(snapshot_path, out, adapter, row_group_rows: int | None = None) -> dict:
    """The non-streaming stage: the whole snapshot derived at once, each output one write_table call."""
    train, test, summary = featurize(files.read_frame(snapshot_path), adapter, ADAPTER_PARAMS, TEST_PERCENT, SEED)
    schema = adapter.features_schema
    for name, rows in (("train", train), ("test", test)):
        if row_group_rows is None:
            files.write_frame(out / f"{name}.parquet", rows, schema)
        else:
            with pq.ParquetWriter(out / f"{name}.parquet", schema, **files.PARQUET_OPTIONS) as writer:
                writer.write_table(files.to_arrow(rows, schema), row_group_size=row_group_rows)
    files.write_json(out / "summary.json", summary)
    return summary


def streamed(snapshot_path, out, adapter, chunk_rows: int, row_group_rows: int = files.ROW_GROUP_ROWS) -> dict:
    summary = featurize_file(
        snapshot_path,
        out / "train.parquet",
        out / "test.parquet",
        adapter,
        ADAPTER_PARAMS,
        TEST_PERCENT,
        SEED,
        chunk_rows=chunk_rows,
        row_group_rows=row_group_rows,
    )
    files.write_json(out / "summary.json", summary)
    return summary


def digests(folder) -> dict[str, str]:
    return {
        name: hashlib.md5((folder / name).read_bytes()).hexdigest()
        for name in ("train.parquet", "test.parquet", "summary.json")
    }


def row_groups(path) -> list[int]:
    metadata = pq.ParquetFile(path).metadata
    return [metadata.row_group(index).num_rows for index in range(metadata.num_row_groups)]


@pytest.mark.slow
@pytest.mark.parametrize("n_classes", [2, 3])
def test_any_chunking_writes_the_one_shot_bytes(tmp_path, n_classes):
    adapter = frames.with_derive(row_local_derive(excluded_every=4, n_classes=n_classes))
    snapshot = tmp_path / "snapshot.parquet"
    write_snapshot(snapshot, frames.snapshot_table(rows=151, seed=2), row_group_rows=50)
    reference = tmp_path / "reference"
    reference.mkdir()
    # Row groups of 8 rows: both outputs span several, cut inside chunks and between them.
    expected_summary = one_shot(snapshot, reference, adapter, row_group_rows=8)
    assert len(row_groups(reference / "train.parquet")) > 5 and len(row_groups(reference / "test.parquet")) > 3
    # 1: chunks with no feature row, or no test row; 7 and 33: uneven against
    # the ids, the exclusions, the snapshot's row groups and the output's; 1000: one chunk.
    for chunk_rows in (1, 7, 33, 1000):
        out = tmp_path / f"chunks-{chunk_rows}"
        out.mkdir()
        assert streamed(snapshot, out, adapter, chunk_rows, row_group_rows=8) == expected_summary
        assert digests(out) == digests(reference), chunk_rows
    assert expected_summary["snapshot_rows"] == 151 and expected_summary["excluded_divisible"] > 0
    assert json.loads((reference / "summary.json").read_text())["train_rows"] == expected_summary["train_rows"]


def test_the_stage_defaults_write_what_write_frame_wrote(tmp_path):
    """At the stage's own row-group size (a small file: one row group per output), as the old stage wrote."""
    adapter = frames.with_derive(row_local_derive())
    snapshot = tmp_path / "snapshot.parquet"
    write_snapshot(snapshot, frames.snapshot_table(rows=120, seed=3))
    reference, out = tmp_path / "reference", tmp_path / "streamed"
    reference.mkdir()
    out.mkdir()
    one_shot(snapshot, reference, adapter)
    streamed(snapshot, out, adapter, chunk_rows=13)
    assert digests(out) == digests(reference)
    assert (
        row_groups(out / "train.parquet")
        == row_groups(reference / "train.parquet")
        == [len(files.read_frame(out / "train.parquet"))]
    )


def test_row_groups_are_cut_where_one_write_table_cuts_them(tmp_path):
    """Same row groups, and in each the pages one contiguous array gives (pieces would move them)."""
    schema = pa.schema([("id", pa.int64()), ("text", pa.string()), ("value", pa.float64())])
    rows = 3000
    # Long values: pages fill by size (1 MB) and are cut where a write batch ends.
    table = pa.table(
        {
            "id": np.arange(rows),
            "text": [f"{i:04d}" * 300 if i % 9 else None for i in range(rows)],
            "value": np.sin(np.arange(rows)),
        },
        schema=schema,
    )
    sizes = [0, 1, 1027, 0, 900, 5, 256, 700, 111]  # uneven, with empty pieces
    cuts = np.cumsum([0, *sizes, rows - sum(sizes)])
    pieces = [table.slice(start, end - start) for start, end in itertools.pairwise(cuts)]
    for name, written in (("whole", table), ("pieces", pa.concat_tables(pieces))):
        with pq.ParquetWriter(tmp_path / f"{name}.parquet", schema, **files.PARQUET_OPTIONS) as writer:
            writer.write_table(written, row_group_size=1100)
    assert (tmp_path / "pieces.parquet").read_bytes() != (tmp_path / "whole.parquet").read_bytes()
    with files.parquet_stream(tmp_path / "streamed.parquet", schema, row_group_rows=1100) as stream:
        for piece in pieces:
            stream.write(piece)
    assert stream.rows == rows
    assert row_groups(tmp_path / "streamed.parquet") == [1100, 1100, 800]
    assert (tmp_path / "streamed.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()


def test_an_empty_output_equals_write_frame_of_no_rows(tmp_path):
    schema = ADAPTER.features_schema
    files.write_frame(tmp_path / "whole.parquet", frames.features(0), schema)
    with files.parquet_stream(tmp_path / "streamed.parquet", schema) as stream:
        stream.write(schema.empty_table())
    assert (tmp_path / "streamed.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    assert row_groups(tmp_path / "streamed.parquet") == [0]


def test_a_duplicate_id_across_a_chunk_boundary_is_refused_and_nothing_is_written(tmp_path):
    adapter = frames.with_derive(row_local_derive())
    table = frames.snapshot_table(rows=40)
    # Rows 19 and 20 share an id; chunks of 20 rows put them on either side of a boundary.
    ids = table.column(ADAPTER.id).to_numpy().copy()
    ids[20:] -= 3
    assert ids[19] == ids[20] and (np.diff(ids) >= 0).all()
    snapshot = tmp_path / "snapshot.parquet"
    write_snapshot(snapshot, table.set_column(0, ADAPTER.id, pa.array(ids)))
    with pytest.raises(ValueError, match=f"duplicate {ADAPTER.id} values \\({ids[20]}\\)"):
        streamed(snapshot, tmp_path, adapter, chunk_rows=20)
    with pytest.raises(ValueError, match=f"duplicate {ADAPTER.id} values"):
        streamed(snapshot, tmp_path, adapter, chunk_rows=7)  # the pair inside one chunk
    assert not list(tmp_path.glob("*train*")) and not list(tmp_path.glob("*test*"))  # not even a temporary


def test_chunks_out_of_id_order_are_refused():
    adapter = frames.with_derive(row_local_derive())
    snapshot = frames.snapshot_table(rows=40).to_pandas()
    swapped = [snapshot.iloc[20:], snapshot.iloc[:20]]
    with pytest.raises(ValueError, match=f"not in {ADAPTER.id} order"):
        list(split_chunks(swapped, adapter, ADAPTER_PARAMS, TEST_PERCENT, SEED, Tally()))
    # Inside one chunk any order is the adapter's to sort (its rows come out in id order).
    train, test, _ = featurize(snapshot.iloc[::-1], adapter, ADAPTER_PARAMS, TEST_PERCENT, SEED)
    assert train[ADAPTER.id].is_monotonic_increasing and test[ADAPTER.id].is_monotonic_increasing


def test_empty_chunks_change_nothing():
    adapter = frames.with_derive(row_local_derive())
    snapshot = frames.snapshot_table(rows=60).to_pandas()
    empty = snapshot.iloc[0:0]

    def run(chunks):
        tally = Tally()
        parts = list(split_chunks(chunks, adapter, ADAPTER_PARAMS, TEST_PERCENT, SEED, tally))
        return [pd.concat(side, ignore_index=True) for side in zip(*parts, strict=True)], tally.summary()

    (train, test), summary = run([snapshot])
    (train_chunked, test_chunked), summary_chunked = run(
        [empty, snapshot.iloc[:25], empty, empty, snapshot.iloc[25:], empty]
    )
    pd.testing.assert_frame_equal(train_chunked, train)
    pd.testing.assert_frame_equal(test_chunked, test)
    assert summary_chunked == summary


def test_an_empty_snapshot_file_or_no_model_rows_leave_no_output(tmp_path):
    snapshot = tmp_path / "snapshot.parquet"
    write_snapshot(snapshot, ADAPTER.snapshot_schema.empty_table())
    with pytest.raises(ValueError, match="the snapshot is empty"):
        streamed(snapshot, tmp_path, frames.with_derive(row_local_derive()), chunk_rows=5)
    write_snapshot(snapshot, frames.snapshot_table(rows=30))
    with pytest.raises(ValueError, match=r"no snapshot row has a target to learn from \(.*excluded_divisible.: 30"):
        streamed(snapshot, tmp_path, frames.with_derive(row_local_derive(excluded_every=1)), chunk_rows=7)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["snapshot.parquet"]


def test_chunks_have_the_whole_frames_dtypes_and_index(tmp_path):
    """An integer column with a gap in only one chunk reads as float64 in every chunk, as in the whole frame."""
    table = pa.table(
        {
            "id": pa.array(range(10), pa.int64()),
            "count": pa.array([1, 2, 3, 4, 5, 6, 7, 8, None, 10], pa.int16()),
            "flag": pa.array([True, False] * 4 + [None, True], pa.bool_()),
            "whole": pa.array(range(10), pa.int8()),
            "text": pa.array(list("abcdefghij"), pa.string()),
        }
    )
    path = tmp_path / "frame.parquet"
    files.write_parquet(path, [table.slice(0, 4), table.slice(4)], table.schema)
    whole = files.read_frame(path)
    assert whole["count"].dtype == "float64" and whole["flag"].dtype == object and whole["whole"].dtype == "int8"
    chunks = list(files.read_frames(path, chunk_rows=3))
    assert [len(chunk) for chunk in chunks] == [3, 3, 3, 1]
    pd.testing.assert_frame_equal(pd.concat(chunks), whole)
    for chunk in chunks:
        pd.testing.assert_frame_equal(chunk, whole.loc[chunk.index])
