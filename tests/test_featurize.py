"""Feature derivation, outcome exclusion and the hash split on tiny frames."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from src.datasets import flights as dataset
from src.pipeline.featurize import featurize, is_test


def tiny_snapshot(n: int = 6) -> pd.DataFrame:
    rows = []
    statuses = ["landed", "landed", "cancelled", "diverted", "scheduled", "landed"]
    for i in range(n):
        rows.append({name: np.nan for name in dataset.SNAPSHOT_SCHEMA.names})
        rows[-1].update(
            flight_id=100 - i, status=statuses[i % len(statuses)], year=2013, month=3, day=4,
            sched_dep_time=1745, carrier="AA", origin="JFK", dest="LAX", manufacturer="BOEING",
            distance=2475.0, plane_year=2003.0, seats=180.0, engines=2.0, temp=50.0,
            arr_delay=[30.0, 15.0, np.nan, np.nan, np.nan, 16.0][i % 6],
        )
    return pd.DataFrame(rows)


def test_features_and_exclusions():
    train, test, summary = featurize(tiny_snapshot(), 15, 50, seed=1)
    rows = pd.concat([train, test]).sort_values(dataset.ID)
    assert rows[dataset.ID].tolist() == [95, 99, 100]
    assert rows[dataset.TARGET].tolist() == [1, 0, 1]  # strictly over 15 minutes
    first = rows.iloc[0]
    assert (first["sched_dep_hour"], first["sched_dep_minute"]) == (17, 45)
    assert first["weekday"] == 0  # 2013-03-04 was a Monday
    assert first["day_of_year"] == 63 and first["plane_age"] == 10
    assert list(train.columns) == [dataset.ID, *dataset.FEATURES, dataset.TARGET]
    assert summary["excluded_cancelled"] == 1 and summary["excluded_diverted"] == 1
    assert summary["excluded_scheduled"] == 1 and summary["model_rows"] == 3
    assert summary["train_rows"] + summary["test_rows"] == 3


def test_split_is_a_pure_function_of_id_and_seed():
    ids = pd.Series(np.arange(1, 20001))
    mask = is_test(ids, 20, seed=7)
    assert 0.18 < mask.mean() < 0.22
    # the same id lands on the same side whatever else is in the frame, in any order
    shuffled = ids.sample(frac=0.5, random_state=3)
    assert (is_test(shuffled, 20, seed=7) == mask[shuffled.to_numpy() - 1]).all()
    assert (is_test(ids, 20, seed=8) != mask).any()


def test_empty_and_broken_snapshots_are_named():
    with pytest.raises(ValueError, match="empty"):
        featurize(tiny_snapshot().iloc[0:0], 15, 20, 1)
    with pytest.raises(ValueError, match=r"lacks columns \['arr_delay'\]"):
        featurize(tiny_snapshot().drop(columns="arr_delay"), 15, 20, 1)
    duplicated = pd.concat([tiny_snapshot(), tiny_snapshot().iloc[:1]])
    with pytest.raises(ValueError, match="duplicate flight_id"):
        featurize(duplicated, 15, 20, 1)
    only_cancelled = tiny_snapshot().assign(status="cancelled")
    with pytest.raises(ValueError, match="no snapshot row has an outcome"):
        featurize(only_cancelled, 15, 20, 1)
    strange = tiny_snapshot().assign(status="teleported")
    with pytest.raises(ValueError, match="unknown flight statuses"):
        featurize(strange, 15, 20, 1)
