"""Stage `featurize`: model rows from the snapshot, split into train and test.

The split is a pure function of each row's id and the seed (a hash), never of
row position or global random state, so a flight stays on its side of the
split whatever else is added to or removed from the snapshot.
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from src import config, dataset, files
from src.params import ParamsError, load_params

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a well-mixed, platform-independent 64-bit hash."""
    z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (z ^ (z >> np.uint64(31))) & _MASK64


def is_test(ids: pd.Series, test_percent: int, seed: int) -> np.ndarray:
    """True for the rows whose id hashes (with the seed) into the test share."""
    ids = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        hashed = _splitmix64(ids ^ _splitmix64(np.array([seed], dtype=np.uint64)))
    return (hashed % np.uint64(100)) < np.uint64(test_percent)


def featurize(snapshot: pd.DataFrame, target_delay_minutes: int, test_percent: int, seed: int):
    """Return (train, test, summary) for a snapshot frame."""
    if snapshot.empty:
        raise ValueError("the snapshot is empty")
    if snapshot[dataset.ID].duplicated().any():
        raise ValueError(f"the snapshot has duplicate {dataset.ID} values")
    rows, excluded = dataset.derive_features(snapshot, target_delay_minutes)
    if rows.empty:
        raise ValueError(f"no snapshot row has an outcome to learn from ({excluded})")
    test_mask = is_test(rows[dataset.ID], test_percent, seed)
    train, test = rows.loc[~test_mask].reset_index(drop=True), rows.loc[test_mask].reset_index(drop=True)
    summary = {
        "snapshot_rows": int(len(snapshot)),
        "model_rows": int(len(rows)),
        "train_rows": int(len(train)),
        "test_rows": int(len(test)),
        "train_positive_rate": round(float(train[dataset.TARGET].mean()), 6) if len(train) else None,
        **excluded,
    }
    return train, test, summary


def main() -> None:
    params = load_params()
    snapshot = files.read_frame(config.SNAPSHOT)
    train, test, summary = featurize(
        snapshot, params.featurize.target_delay_minutes, params.featurize.test_percent, params.seed
    )
    files.write_frame(config.TRAIN_FEATURES, train, dataset.FEATURES_SCHEMA)
    files.write_frame(config.TEST_FEATURES, test, dataset.FEATURES_SCHEMA)
    files.write_json(config.FEATURIZE_SUMMARY, summary)
    print("featurize: " + ", ".join(f"{key}={value}" for key, value in summary.items()))


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, ValueError, FileNotFoundError) as error:
        sys.exit(f"featurize: error: {error}")
