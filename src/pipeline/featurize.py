"""Stage `featurize`: model rows from the snapshot, split into train and test.

The split is a pure function of each row's id and the seed (a hash), never of
row position or global random state, so a record stays on its side of the
split whatever else is added to or removed from the snapshot.
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from src.pipeline import config, files
from src.pipeline.adapter import Adapter
from src.pipeline.ids import splitmix64
from src.pipeline.params import ParamsError, load_adapter, load_params


def is_test(ids: pd.Series, test_percent: int, seed: int) -> np.ndarray:
    """True for the rows whose id hashes (with the seed) into the test share."""
    ids = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        hashed = splitmix64(ids ^ splitmix64(np.array([seed], dtype=np.uint64)))
    return (hashed % np.uint64(100)) < np.uint64(test_percent)


def featurize(snapshot: pd.DataFrame, adapter: Adapter, adapter_params, test_percent: int, seed: int):
    """Return (train, test, summary) for a snapshot frame."""
    if snapshot.empty:
        raise ValueError("the snapshot is empty")
    if snapshot[adapter.id].duplicated().any():
        raise ValueError(f"the snapshot has duplicate {adapter.id} values")
    rows, excluded = adapter.derive_features(snapshot, adapter_params)
    if rows.empty:
        raise ValueError(f"no snapshot row has a target to learn from ({excluded})")
    test_mask = is_test(rows[adapter.id], test_percent, seed)
    train, test = rows.loc[~test_mask].reset_index(drop=True), rows.loc[test_mask].reset_index(drop=True)
    summary = {
        "snapshot_rows": int(len(snapshot)),
        "model_rows": int(len(rows)),
        "train_rows": int(len(train)),
        "test_rows": int(len(test)),
        **target_summary(train[adapter.target]),
        **excluded,
    }
    return train, test, summary


def target_summary(target: pd.Series) -> dict:
    """The training target at a glance: a positive rate for 0/1 labels, else rows per class."""
    values = set(target.dropna().unique().tolist())
    if values <= {0, 1} and pd.api.types.is_integer_dtype(target.dtype):
        return {"train_positive_rate": round(float(target.mean()), 6) if len(target) else None}
    counts = target.value_counts()
    return {"train_class_rows": {str(label): int(counts[label]) for label in sorted(counts.index)}}


def main() -> None:
    params = load_params()
    adapter, adapter_params = load_adapter(params)
    snapshot = files.read_frame(config.SNAPSHOT)
    train, test, summary = featurize(snapshot, adapter, adapter_params, params.featurize.test_percent, params.seed)
    files.write_frame(config.TRAIN_FEATURES, train, adapter.features_schema)
    files.write_frame(config.TEST_FEATURES, test, adapter.features_schema)
    files.write_json(config.FEATURIZE_SUMMARY, summary)
    print("featurize: " + ", ".join(f"{key}={value}" for key, value in summary.items()))


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, ValueError, FileNotFoundError) as error:
        sys.exit(f"featurize: error: {error}")
