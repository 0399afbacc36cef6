"""Properties of the pure functions that take hostile input, over inputs hypothesis generates.

The input contract on arbitrary JSON-like rows, the params loader on arbitrary YAML-like mappings and
text, and as_of parsing. Each either accepts (and then its result keeps the promise) or refuses with
its own error and a short message: never another exception, which a caller would see as a traceback.
Generation is bounded and derandomized, so every run tries the same inputs.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from src.pipeline import config
from src.pipeline.dataset import load_adapter
from src.pipeline.params import ParamsError, load_params, validate
from src.pipeline.source.moments import TIME_FORMAT, as_of_timestamp
from src.serving.contract import LARGEST, Contract, ContractError
from tests.template import frames
from tests.template.frames import ADAPTER, LEVELS, UNSEEN

BOUNDED = settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- the input contract ---------------------------------------------------------

# Every declared range, plus one tight range on a column that has none, so both kinds are hit.
_RANGES = {**ADAPTER.feature_ranges}
if ADAPTER.numeric and not _RANGES:
    _RANGES[ADAPTER.numeric[0]] = (-5.0, 5.0)
CONTRACT = Contract(
    id=ADAPTER.id,
    categorical=tuple(ADAPTER.categorical),
    numeric=tuple(ADAPTER.numeric),
    features=tuple(ADAPTER.features),
    categories=frames.categories(),
    ranges={name: tuple(bounds) for name, bounds in _RANGES.items()},
)

# Any code point, lone surrogates included (hypothesis leaves them out by default): JSON's
# escapes allow them, and Python's parser hands them on.
TEXT = st.text(st.characters(exclude_categories=()), max_size=8)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(10**400), max_value=10**400),  # past any float
    st.floats(),  # NaN, infinities, subnormals
    st.floats(min_value=-30, max_value=30),
    st.sampled_from([LARGEST, -LARGEST, LARGEST * 2, 2**63, -(2**63), 2**64 - 1]),
    TEXT,
    st.sampled_from([*LEVELS, UNSEEN, "", "1.5", "NaN"]),
)
JSON_LIKE = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6
)


def _row(columns: list[str]):
    return st.dictionaries(st.sampled_from(columns), JSON_LIKE, max_size=len(columns))


def _valid(name: str):
    """Values the contract accepts in column `name` (the unknown bucket's included)."""
    if name == ADAPTER.id:
        return st.integers(min_value=-(2**63), max_value=2**63 - 1)
    if name in ADAPTER.categorical:
        return st.sampled_from([*LEVELS, UNSEEN, None])
    low, high = CONTRACT.ranges.get(name, (None, None))
    low, high = -LARGEST if low is None else low, LARGEST if high is None else high
    return st.none() | st.floats(min_value=low, max_value=high) | st.integers(math.ceil(low), math.floor(high))


@st.composite
def frames_of_rows(draw) -> pd.DataFrame:
    """Rows as a caller hands them over (dicts turned into a frame): valid values, with a few
    hostile cells, columns or keys among them, so that both outcomes are common."""
    columns = [ADAPTER.id, *ADAPTER.features, *draw(st.lists(TEXT, max_size=2))]
    hostile = set(draw(st.lists(st.sampled_from(columns), max_size=2)))
    # Ids past int64 that pandas reads as uint64 (and numpy's astype would wrap around).
    unsigned = st.integers(min_value=0, max_value=2**64 - 1) | st.sampled_from([2**63, 2**64 - 1])
    values = {
        name: JSON_LIKE if name in hostile or name not in CONTRACT.features + (CONTRACT.id,) else _valid(name)
        for name in columns
    }
    if draw(st.booleans()):
        values[ADAPTER.id] = unsigned
    rows = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        row = {name: draw(strategy) for name, strategy in values.items()}
        # Drop a key now and then: a missing column, or a hole pandas fills with NaN.
        for name in draw(st.lists(st.sampled_from(columns), max_size=1)):
            row.pop(name, None)
        rows.append(row)
    return pd.DataFrame(rows)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@pytest.mark.slow
@BOUNDED
@given(frame=frames_of_rows())
def test_the_contract_refuses_only_with_its_own_error_and_keeps_its_promise(frame):
    try:
        checked = CONTRACT.check(frame)
    except ContractError as error:
        assert str(error)
        return
    assert list(checked.features.columns) == list(CONTRACT.features)
    assert len(checked.features) == len(frame)
    for name in CONTRACT.categorical:
        assert all(isinstance(value, str) or _missing(value) for value in checked.features[name]), name
    for name in CONTRACT.numeric:
        values = checked.features[name].to_numpy()
        assert values.dtype == np.float64, name
        present = values[~np.isnan(values)]
        assert (np.abs(present) <= LARGEST).all(), name
        low, high = CONTRACT.ranges.get(name, (None, None))
        assert low is None or (present >= low).all(), name
        assert high is None or (present <= high).all(), name
    if checked.ids is not None:
        assert checked.ids.dtype == np.int64
        # The ids the caller gave, not wrapped around or rounded.
        assert [int(value) for value in checked.ids] == [int(value) for value in frame[CONTRACT.id]]
    counts = checked.unknown_categories
    assert set(counts) == set(CONTRACT.categorical)
    assert all(count["unknown"] + count["missing"] <= len(frame) for count in counts.values())


@pytest.mark.slow
@BOUNDED
@given(rows=st.lists(_row([ADAPTER.id, *ADAPTER.features, "note"]), min_size=1, max_size=3))
def test_the_services_row_model_agrees_with_the_contract(rows):
    """What the service's row model accepts, the contract accepts too: a row that passes HTTP
    validation never fails later inside predict."""
    from pydantic import ValidationError

    Row = CONTRACT.row_model()
    try:
        parsed = [Row.model_validate(row) for row in rows]
    except ValidationError:
        return
    frame = pd.DataFrame({name: [getattr(row, name) for row in parsed] for name in CONTRACT.features})
    CONTRACT.check(frame)


# --- the params loader ----------------------------------------------------------

RAW = yaml.safe_load(config.PARAMS_FILE.read_text())
# YAML's scalars, as safe_load gives them: an unquoted date is a date.
YAML_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.dates(),
    st.sampled_from(["2013-06-30", "2999-12-31", "1999-01-01T00:00:00+05:00", "xgboost", "stacking", "200"]),
)
# Keys a person types: a key of control characters or spaces is named unreadably (a known gap, below).
YAML_KEYS = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,7}\Z") | st.integers()
YAML_VALUES = st.recursive(
    YAML_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(YAML_KEYS, inner, max_size=3),
    max_leaves=8,
)


def _paths(node, prefix=()):
    """Every key path in a nested mapping, parents first."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))


PATHS = list(_paths(RAW))


@st.composite
def mutated_params(draw) -> object:
    """The committed params with a few keys set to arbitrary values, removed, or added; or anything at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(YAML_VALUES)
    raw = copy.deepcopy(RAW)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = raw
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if action == "set":
            parent[path[-1]] = draw(YAML_VALUES)
        elif action == "delete":
            parent.pop(path[-1], None)
        else:
            parent[draw(YAML_KEYS)] = draw(YAML_VALUES)
    return raw


def _assert_names_keys(message: str) -> None:
    """A header line, then one line per problem: `  key: what is wrong`."""
    header, *problems = message.split("\n")
    assert header.endswith("is invalid:") and problems, message
    for line in problems:
        assert re.match(r"  \S.*?: \S", line), f"not one line naming a key: {line!r} in\n{message}"


@pytest.mark.slow
@BOUNDED
@given(raw=mutated_params())
def test_params_validation_refuses_only_with_a_params_error_naming_each_key(raw):
    try:
        params = validate(raw)
        load_adapter(params)
    except ParamsError as error:
        _assert_names_keys(str(error))


@pytest.mark.slow
@BOUNDED
@given(text=st.text(max_size=60) | YAML_VALUES.map(yaml.safe_dump))
def test_loading_any_text_refuses_only_with_a_params_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ParamsError) as error:
        load_params(path)
    assert str(path) in str(error.value)


# --- as_of ----------------------------------------------------------------------

# Text shaped like a date or timestamp, with or without a zone: most of it is no real moment.
AS_OF_LIKE = r"\A\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:\d{2})?)?\Z"


@BOUNDED
@given(text=st.text(max_size=30) | st.from_regex(AS_OF_LIKE))
def test_as_of_text_parses_to_the_time_format_or_refuses_naming_as_of(text):
    try:
        moment = as_of_timestamp(text)
    except ValueError as error:
        assert str(error).startswith("as_of ") and "\n" not in str(error).replace(repr(text), "")
        return
    assert dt.datetime.strptime(moment, TIME_FORMAT).strftime(TIME_FORMAT) == moment


@BOUNDED
# From year 1000, and a day inside the calendar's ends: the known gaps below.
@given(
    moment=st.datetimes(
        min_value=dt.datetime(1000, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.timezones() | st.just(dt.UTC),
    )
)
def test_as_of_is_the_same_moment_in_utc(moment):
    assert as_of_timestamp(moment.isoformat()) == moment.astimezone(dt.UTC).strftime(TIME_FORMAT)


@BOUNDED
@given(day=st.dates(min_value=dt.date(1000, 1, 1)))
def test_a_bare_date_is_the_end_of_that_day(day):
    assert as_of_timestamp(day.isoformat()) == f"{day.isoformat()} 23:59:59"


# --- gaps the properties above found, now fixed ------------------------------


def test_a_key_of_control_characters_is_named_quoted():
    with pytest.raises(ParamsError) as error:
        validate({**RAW, "\r": 1})
    _assert_names_keys(str(error.value))


def test_an_as_of_that_leaves_the_calendar_in_utc_is_a_params_error():
    raw = copy.deepcopy(RAW)
    raw["gather"]["as_of"] = "0001-01-01T00:00:00+01:00"
    with pytest.raises(ParamsError, match="gather.as_of"):
        validate(raw)


def test_an_as_of_before_year_1000_keeps_four_digits():
    assert as_of_timestamp("0999-01-01") == "0999-01-01 23:59:59"


def test_a_params_file_that_is_not_utf8_is_a_params_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"seed: \xff\n")
    with pytest.raises(ParamsError, match="UTF-8"):
        load_params(path)


@pytest.mark.slow
def test_a_params_file_nested_too_deeply_is_a_params_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ParamsError):
        load_params(path)
