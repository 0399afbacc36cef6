"""The flights adapter's feature derivation and outcome exclusion, through featurize, on tiny frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from src.datasets import flights
from src.pipeline import files
from src.pipeline.featurize import featurize

PARAMS = flights.Params(target_delay_minutes=15)


def tiny_snapshot(n: int = 6) -> pd.DataFrame:
    rows = []
    statuses = ["landed", "landed", "cancelled", "diverted", "scheduled", "landed"]
    for i in range(n):
        rows.append({name: np.nan for name in flights.SNAPSHOT_SCHEMA.names})
        rows[-1].update(
            flight_id=100 - i,
            status=statuses[i % len(statuses)],
            year=2013,
            month=3,
            day=4,
            sched_dep_time=1745,
            carrier="AA",
            origin="JFK",
            dest="LAX",
            manufacturer="BOEING",
            distance=2475.0,
            plane_year=2003.0,
            seats=180.0,
            engines=2.0,
            temp=50.0,
            arr_delay=[30.0, 15.0, np.nan, np.nan, np.nan, 16.0][i % 6],
        )
    return pd.DataFrame(rows)


def test_features_and_exclusions():
    train, test, summary = featurize(tiny_snapshot(), flights.ADAPTER, PARAMS, 50, seed=1)
    rows = pd.concat([train, test]).sort_values(flights.ID)
    assert rows[flights.ID].tolist() == [95, 99, 100]
    assert rows[flights.TARGET].tolist() == [1, 0, 1]  # strictly over 15 minutes
    first = rows.iloc[0]
    assert (first["sched_dep_hour"], first["sched_dep_minute"]) == (17, 45)
    assert first["weekday"] == 0  # 2013-03-04 was a Monday
    assert first["day_of_year"] == 63 and first["plane_age"] == 10
    assert list(train.columns) == [flights.ID, *flights.FEATURES, flights.TARGET]
    assert list(train.columns) == flights.ADAPTER.features_schema.names
    assert files.to_arrow(rows, flights.ADAPTER.features_schema).num_rows == 3
    assert summary["excluded_cancelled"] == 1 and summary["excluded_diverted"] == 1
    assert summary["excluded_scheduled"] == 1 and summary["excluded_no_arrival_delay"] == 0
    assert summary["model_rows"] == 3 and summary["train_rows"] + summary["test_rows"] == 3
    assert summary["train_positive_rate"] == (round(float(train[flights.TARGET].mean()), 6) if len(train) else None)


def test_the_threshold_is_the_adapters_own_param():
    derived, _ = flights.derive_features(tiny_snapshot(), flights.Params(target_delay_minutes=29))
    assert derived.sort_values(flights.ID)[flights.TARGET].tolist() == [0, 0, 1]  # 16, 15, 30 minutes
    with pytest.raises(Exception, match="target_delay_minutes"):
        flights.ADAPTER.parse_params({"adapter": "flights", "target_delay_minutes": "15"})


def test_landed_without_arrival_delay_is_excluded_and_counted():
    snapshot = tiny_snapshot().assign(arr_delay=np.nan)
    derived, excluded = flights.derive_features(snapshot, PARAMS)
    assert derived.empty and excluded["excluded_no_arrival_delay"] == 3


def test_broken_snapshots_are_named():
    with pytest.raises(ValueError, match=r"lacks columns \['arr_delay'\]"):
        featurize(tiny_snapshot().drop(columns="arr_delay"), flights.ADAPTER, PARAMS, 20, 1)
    duplicated = pd.concat([tiny_snapshot(), tiny_snapshot().iloc[:1]])
    with pytest.raises(ValueError, match="duplicate flight_id"):
        featurize(duplicated, flights.ADAPTER, PARAMS, 20, 1)
    only_cancelled = tiny_snapshot().assign(status="cancelled")
    with pytest.raises(ValueError, match="no snapshot row has a target"):
        featurize(only_cancelled, flights.ADAPTER, PARAMS, 20, 1)
    impossible = tiny_snapshot()
    impossible.loc[1, ["month", "day"]] = [2, 29]  # 2013 was no leap year
    with pytest.raises(
        ValueError,
        match=r"flight_id=99: the scheduled date year=2013 month=2 day=29 "
        r"is not a calendar date",
    ):
        featurize(impossible, flights.ADAPTER, PARAMS, 20, 1)
    strange = tiny_snapshot().assign(status="teleported")
    with pytest.raises(ValueError, match="unknown flight statuses"):
        featurize(strange, flights.ADAPTER, PARAMS, 20, 1)


def test_the_service_derives_raw_rows_with_featurizes_own_code():
    # The raw contract (what /predict/raw and `predict --raw` run) on tiny rows: the same
    # features as derive_features, for every row, the excluded ones too, and no target.
    from src.serving.contract import RawContract

    snapshot = tiny_snapshot()
    raw = RawContract(id=flights.ID, inputs=flights.INPUTS)
    derived, ignored = raw.check(snapshot)
    assert derived[flights.ID].tolist() == snapshot[flights.ID].tolist()  # the rows' order, none excluded
    assert list(derived.columns) == [flights.ID, *flights.FEATURES]
    featurized, _ = flights.derive_features(snapshot, PARAMS)
    kept = derived.set_index(flights.ID).loc[featurized[flights.ID]].reset_index()
    pd.testing.assert_frame_equal(kept, featurized.drop(columns=flights.TARGET), check_dtype=True)
    assert "arr_delay" in ignored and "status" in ignored and flights.ID not in ignored
    assert flights.ADAPTER.inputs is flights.INPUTS


def test_raw_rows_that_are_no_calendar_date_are_named():
    from src.serving.contract import ContractError, RawContract

    snapshot = tiny_snapshot(2).assign(day=[4, 31], month=[3, 2])
    with pytest.raises(ContractError, match=r"flight_id=99: the scheduled date year=2013 month=2 day=31"):
        RawContract(id=flights.ID, inputs=flights.INPUTS).check(snapshot)
