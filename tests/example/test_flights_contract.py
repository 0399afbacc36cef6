"""The flights model's committed manifest and recorded lists, and its input contract on hand-written rows."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from src.datasets import flights
from src.pipeline import config
from src.pipeline.params import load_params
from src.serving.contract import Contract, ContractError

pytestmark = pytest.mark.skipif(
    load_params().dataset.adapter != "flights", reason="the committed model is not the flights example's"
)


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(config.MANIFEST.read_text())


def a_flight(**changes) -> dict:
    row = dict(
        flight_id=1,
        carrier="AA",
        origin="JFK",
        dest="LAX",
        manufacturer="BOEING",
        sched_dep_hour=17.0,
        sched_dep_minute=45.0,
        weekday=0.0,
        month=3.0,
        day_of_year=63.0,
        distance=2475.0,
        plane_age=10.0,
        seats=180.0,
        engines=2.0,
        temp=50.0,
        dewp=30.0,
        humid=45.0,
        wind_dir=270.0,
        wind_speed=10.0,
        wind_gust=None,
        precip=0.0,
        pressure=1015.0,
        visib=10.0,
    )
    row.update(changes)
    return row


def test_the_committed_manifest_is_the_flights_adapters(manifest):
    assert manifest["dataset"] == "flights" and manifest["id"] == flights.ID and manifest["target"] == flights.TARGET
    assert manifest["features"] == list(flights.FEATURES) and manifest["classes"] == [0, 1]
    assert manifest["target_type"] == "int8"
    assert manifest["ranges"] == {name: list(bounds) for name, bounds in flights.FEATURE_RANGES.items()}


@pytest.mark.long
def test_every_numeric_feature_has_a_finite_range_by_meaning_that_the_data_lies_in(reproduced):
    assert set(flights.FEATURE_RANGES) == set(flights.NUMERIC)
    for name, (low, high) in flights.FEATURE_RANGES.items():
        assert low is not None and high is not None and low < high, name
    # The training features of a fresh build (a fresh clone has none of its own until `dvc repro`).
    features = pd.read_parquet(
        reproduced / config.TRAIN_FEATURES.relative_to(config.ROOT), columns=list(flights.NUMERIC)
    )
    outside = {
        name: (features[name].min(), features[name].max())
        for name, (low, high) in flights.FEATURE_RANGES.items()
        if not features[name].dropna().between(low, high).all()
    }
    assert not outside, f"training values beyond their meaning: {outside}"


def test_recorded_lists_are_the_three_new_york_airports_and_their_carriers():
    params = load_params()
    assert params.categories["origin"] == ["EWR", "JFK", "LGA"]
    assert {"AA", "B6", "DL", "UA"} <= set(params.categories["carrier"]) and len(params.categories["carrier"]) == 16
    assert list(params.categories) == list(flights.CATEGORICAL)


def test_a_plausible_flight_passes(manifest):
    checked = Contract.from_manifest(manifest).check(pd.DataFrame([a_flight(), a_flight(flight_id=2, carrier="ZZ")]))
    assert checked.unknown_categories["carrier"] == {"unknown": 1, "missing": 0}
    assert checked.ids.tolist() == [1, 2] and list(checked.features.columns) == list(flights.FEATURES)


@pytest.mark.parametrize(
    "changes, expected",
    [
        (dict(sched_dep_hour=24.0), "sched_dep_hour: 24.0 outside the allowed range from 0 to 23 at row 0"),
        (dict(weekday=7.0), "weekday: 7.0 outside the allowed range from 0 to 6"),  # Monday = 0, as pandas
        (dict(humid=101.0), "humid: 101.0 outside the allowed range from 0 to 100"),
        (dict(distance=-1.0), "distance: -1.0 outside the allowed range from 0 to 12500"),
        # Finite bounds by meaning: a float32 maximum is no distance, age, temperature or pressure.
        (dict(distance=3.4e38), "distance: 3.4e+38 outside the allowed range from 0 to 12500"),
        (dict(plane_age=-1.0), "plane_age: -1.0 outside the allowed range from 0 to 150"),
        (dict(temp=3.4e38), "temp: 3.4e+38 outside the allowed range from -130 to 135"),
        (dict(dewp=-200.0), "dewp: -200.0 outside the allowed range from -130 to 135"),
        (dict(pressure=0.0), "pressure: 0.0 outside the allowed range from 850 to 1100"),
        (dict(month="June"), "month: expected a number or missing, got str 'June' at row 0"),
    ],
)
def test_values_outside_their_meaning_are_refused(manifest, changes, expected):
    with pytest.raises(ContractError) as error:
        Contract.from_manifest(manifest).check(pd.DataFrame([a_flight(**changes)]))
    assert expected in str(error.value)


def test_every_problem_is_listed_at_once(manifest):
    with pytest.raises(ContractError) as error:
        Contract.from_manifest(manifest).check(pd.DataFrame([a_flight(weekday=9.0, humid=-1.0)]))
    assert "weekday" in str(error.value) and "humid" in str(error.value)
