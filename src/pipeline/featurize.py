"""Stage `featurize`: model rows from the snapshot, split into train and test.

The split is a pure function of each row's id and the seed (a hash), never of
row position or global random state, so a record stays on its side of the
split whatever else is added to or removed from the snapshot.

The snapshot is streamed: read CHUNK_ROWS rows at a time, each chunk derived
(the adapter's derive_features is row-local), split and appended to the two
outputs. Memory holds one chunk and at most one row group per output, however
large the snapshot. The files and the summary are byte-identical to deriving
and writing the whole snapshot at once: chunk size changes no byte.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from src.pipeline import config, files
from src.pipeline.adapter import REGRESSION, Adapter
from src.pipeline.dataset import load_adapter
from src.pipeline.ids import splitmix64
from src.pipeline.params import ParamsError, load_params

# Snapshot rows per chunk: bounds the memory of one chunk's derivation (at 10x
# the example, peaks of 0.70-0.73 GiB from 25,000 to 100,000 rows, 0.92 GiB at
# 200,000). A constant, not a param: no output byte depends on it, so it has
# no place in dvc.lock.
CHUNK_ROWS = 100_000


def is_test(ids: pd.Series, test_percent: int, seed: int) -> np.ndarray:
    """True for the rows whose id hashes (with the seed) into the test share."""
    ids = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        hashed = splitmix64(ids ^ splitmix64(np.array([seed], dtype=np.uint64)))
    return (hashed % np.uint64(100)) < np.uint64(test_percent)


class Tally:
    """The stage's summary, counted chunk by chunk: totals, so any chunking gives the same numbers."""

    def __init__(self, task: str | None = None) -> None:
        self.snapshot_rows = self.model_rows = self.train_rows = self.test_rows = 0
        self.excluded: dict[str, int] = {}
        self.train_labels: Counter = Counter()
        self.integer_target = True
        # A regression's training target: its range (the same for any chunking), not one count per value.
        self.task = task
        self.train_range: tuple[float, float] | None = None

    def add(
        self,
        snapshot_rows: int,
        rows: pd.DataFrame,
        train: pd.DataFrame,
        test: pd.DataFrame,
        excluded: dict[str, int],
        target: str,
    ) -> None:
        self.snapshot_rows += snapshot_rows
        self.model_rows += len(rows)
        self.train_rows += len(train)
        self.test_rows += len(test)
        for key, count in excluded.items():
            self.excluded[key] = self.excluded.get(key, 0) + count
        if self.task == REGRESSION:
            values = train[target].dropna()
            if len(values):
                low, high = float(values.min()), float(values.max())
                self.train_range = (
                    (low, high)
                    if self.train_range is None
                    else (min(self.train_range[0], low), max(self.train_range[1], high))
                )
        else:
            self.train_labels.update(label_counts(train[target]))
        if len(rows):
            self.integer_target = self.integer_target and pd.api.types.is_integer_dtype(rows[target].dtype)

    def check(self) -> None:
        """Refuse a snapshot with nothing to learn from, once every chunk is counted."""
        if self.snapshot_rows == 0:
            raise ValueError("the snapshot is empty")
        if self.model_rows == 0:
            raise ValueError(f"no snapshot row has a target to learn from ({self.excluded})")

    def summary(self) -> dict:
        return {
            "snapshot_rows": self.snapshot_rows,
            "model_rows": self.model_rows,
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            **(
                ({"train_target_range": list(self.train_range) if self.train_range else None})
                if self.task == REGRESSION
                else summarize_target(self.train_labels, self.integer_target)
            ),
            **self.excluded,
        }


def split_chunks(
    chunks: Iterable[pd.DataFrame], adapter: Adapter, adapter_params, test_percent: int, seed: int, tally: Tally
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """(train, test) rows of each snapshot chunk, in order, counted into `tally`.

    Chunks must follow each other in id order (gather's ORDER BY): each one's
    ids above the last one's. That makes a duplicate id that straddles two
    chunks visible (the next chunk starts at the id the last one ended on), and
    the concatenated outputs come out in id order, as from the whole snapshot.
    Raises at the end, having yielded every chunk, if nothing was learnable:
    the caller's atomic writes then leave no file.
    """
    last_id = None
    for chunk in chunks:
        if chunk.empty:
            continue
        ids = chunk[adapter.id]
        if ids.duplicated().any():
            raise ValueError(f"the snapshot has duplicate {adapter.id} values")
        first_id = ids.min()
        if last_id is not None and first_id <= last_id:
            if first_id == last_id:
                raise ValueError(f"the snapshot has duplicate {adapter.id} values ({first_id})")
            raise ValueError(
                f"the snapshot is not in {adapter.id} order ({first_id} after {last_id}): featurize "
                f"streams it in chunks and needs the ORDER BY {adapter.id} that gather writes"
            )
        last_id = ids.max()
        rows, excluded = adapter.derive_features(chunk, adapter_params)
        test_mask = is_test(rows[adapter.id], test_percent, seed)
        train, test = rows.loc[~test_mask].reset_index(drop=True), rows.loc[test_mask].reset_index(drop=True)
        tally.add(len(chunk), rows, train, test, excluded, adapter.target)
        yield train, test
    tally.check()


def featurize(snapshot: pd.DataFrame, adapter: Adapter, adapter_params, test_percent: int, seed: int):
    """Return (train, test, summary) for a whole snapshot frame: the stage's steps on one chunk."""
    tally = Tally(adapter.task)
    [(train, test)] = list(split_chunks([snapshot], adapter, adapter_params, test_percent, seed, tally))
    return train, test, tally.summary()


def featurize_file(
    snapshot: Path,
    train_path: Path,
    test_path: Path,
    adapter: Adapter,
    adapter_params,
    test_percent: int,
    seed: int,
    chunk_rows: int = CHUNK_ROWS,
    row_group_rows: int = files.ROW_GROUP_ROWS,
) -> dict:
    """Stream the snapshot file into the train and test files; return the summary.

    Both outputs are written atomically: an error in any chunk (or an empty
    snapshot, found only at the end) leaves neither file behind.
    """
    schema = adapter.features_schema
    tally = Tally(adapter.task)
    chunks = files.read_frames(snapshot, chunk_rows)
    with (
        files.parquet_stream(train_path, schema, row_group_rows) as train_out,
        files.parquet_stream(test_path, schema, row_group_rows) as test_out,
    ):
        for train, test in split_chunks(chunks, adapter, adapter_params, test_percent, seed, tally):
            train_out.write(files.to_arrow(train, schema))
            test_out.write(files.to_arrow(test, schema))
    return tally.summary()


def label_counts(target: pd.Series) -> Counter:
    """Rows per label (gaps not counted), labels as plain Python values."""
    counts = target.value_counts()
    return Counter(dict(zip(counts.index.tolist(), counts.tolist(), strict=True)))


def summarize_target(counts: Counter, integer: bool) -> dict:
    """The training target at a glance: a positive rate for 0/1 labels, else rows per class."""
    if set(counts) <= {0, 1} and integer:
        # From the totals: the same float as the mean of the whole column
        # (both are a correctly rounded division of two exact integers).
        return {"train_positive_rate": round(counts[1] / sum(counts.values()), 6) if counts else None}
    return {"train_class_rows": {str(label): int(counts[label]) for label in sorted(counts)}}


def target_summary(target: pd.Series, task: str | None = None) -> dict:
    """summarize_target for one whole target column (a regression's: its range)."""
    if task == REGRESSION:
        values = target.dropna()
        return {"train_target_range": [float(values.min()), float(values.max())] if len(values) else None}
    return summarize_target(label_counts(target), pd.api.types.is_integer_dtype(target.dtype))


def main() -> None:
    params = load_params()
    adapter, adapter_params = load_adapter(params)
    summary = featurize_file(
        config.SNAPSHOT,
        config.TRAIN_FEATURES,
        config.TEST_FEATURES,
        adapter,
        adapter_params,
        params.featurize.test_percent,
        params.seed,
    )
    files.write_json(config.FEATURIZE_SUMMARY, summary)
    print("featurize: " + ", ".join(f"{key}={value}" for key, value in summary.items()))


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, ValueError, FileNotFoundError) as error:
        sys.exit(f"featurize: error: {error}")
