"""as_of dates for the end-to-end tests, taken from the active adapter's source history.

The tests that build data versions, sweep `gather.as_of` or share experiments need
dates at which the source holds a snapshot the pipeline can learn from. They take
them from the history itself (the `recorded_at` column that every table of the
adapter's `source_tables` has: src/pipeline/source/history.py), never from the example's
calendar, so a fork's history works as well as the flights one.

A *moment* is a distinct date (YYYY-MM-DD, UTC) on which the history recorded
something, from the first one whose snapshot has feature rows of two classes
(before that the pipeline has nothing to train on: the example's flights are
scheduled a month ahead, with no outcome yet), and none from today on (a bare
date means the end of that day, and an as_of in the future is no fixed snapshot:
a row recorded later could still fall before it).
A bare date as_of includes the whole day, so as_of = a moment's date gives that
moment's snapshot.

    moments()               every moment, oldest first
    early_moments(4, 19)    moments by rank, small ones first; with fewer moments than
                            the ranks ask for, the ranks close up (keeping their order):
                            each date is a later moment than the one before it, so its
                            snapshot holds at least as many rows (the tests check more)
    spare_dates(3, after=d, avoid=[...])
                            other distinct dates, for tags that need a date of their own
                            but no snapshot of their own

Each fails the test (never skips it) with a message naming what the history lacks.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable

import pytest
import sqlalchemy as sa

from src.pipeline import config
from src.pipeline.dataset import load_adapter
from src.pipeline.params import load_params
from src.pipeline.source import readers
from src.pipeline.source.history import RECORDED_AT
from src.pipeline.source.moments import as_of_timestamp
from src.pipeline.source.url import parse_url, shown_url

# Rows per read when probing a snapshot: the probes read early, small snapshots.
PROBE_CHUNK_ROWS = 50_000


def _adapter():
    return load_adapter(load_params())


def recorded_dates(url: str | None = None) -> list[str]:
    """Distinct dates on which any source table recorded a version, oldest first, none from today on."""
    adapter, _ = _adapter()
    url = url or config.source_url()
    # recorded_at is UTC text 'YYYY-MM-DD HH:MM:SS': its first ten characters are the date.
    day = functools.partial(sa.func.substr, sa.literal_column(RECORDED_AT), 1, 10)
    union = sa.union(
        *[
            sa.select(day().label("day")).select_from(sa.table(table.name))
            for table in adapter.source_tables.sorted_tables
        ]
    ).subquery()
    engine = readers.open_source(parse_url(url))
    try:
        with engine.connect() as connection:
            days = [row[0] for row in connection.execute(sa.select(union.c.day).distinct().order_by(union.c.day))]
    finally:
        engine.dispose()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    return [day for day in days if day is not None and day < today]


def snapshot_counts(as_of: str, url: str | None = None) -> tuple[int, int, int]:
    """(snapshot rows, feature rows, distinct labels) of the snapshot at `as_of`, as gather and featurize see it."""
    adapter, adapter_params = _adapter()
    url = url or config.source_url()
    snapshot_rows = feature_rows = 0
    labels: set = set()
    # As gather binds it: a bare date is the end of that day, so that day's versions count.
    for table in _snapshot_tables(url, adapter, as_of_timestamp(as_of)):
        chunk = table.to_pandas()
        snapshot_rows += len(chunk)
        rows, _ = adapter.derive_features(chunk, adapter_params)
        feature_rows += len(rows)
        labels.update(rows[adapter.target].dropna().unique().tolist())
    return snapshot_rows, feature_rows, len(labels)


def _snapshot_tables(url: str, adapter, as_of: str):
    """The snapshot's tables as gather reads them: through ADBC where it can, else row by row."""
    if parse_url(url).backend in readers.ARROW_DRIVERS:
        try:
            return list(readers.read_arrow(parse_url(url), adapter, as_of, PROBE_CHUNK_ROWS))
        except readers.TypedFromFirstBatch:  # as gather does: the same values, read row by row
            pass
    return list(readers.read_rows(parse_url(url), adapter, as_of, PROBE_CHUNK_ROWS))


def _learnable(as_of: str) -> bool:
    return snapshot_counts(as_of)[2] >= 2


@functools.cache
def moments() -> tuple[str, ...]:
    """Every recorded date from the first with a learnable snapshot on, oldest first (cached per session)."""
    days = recorded_dates()
    if not days:
        pytest.fail(
            f"the source history ({shown_url(config.source_url())}) records nothing "
            "up to today: ingest data first (python -m src.tools.ingest)"
        )
    # The first learnable date, by galloping then bisecting, so only small early snapshots are read
    # (a later snapshot holds every row an earlier one does).
    if _learnable(days[0]):
        first = 0
    else:
        low, high = 0, 1  # days[low] is not learnable; find a learnable days[high]
        while high < len(days) and not _learnable(days[high]):
            low, high = high, min(2 * high + 1, len(days))
        if high >= len(days):
            pytest.fail(
                f"no snapshot of the source history up to {days[-1]} has feature rows of two "
                "classes: the pipeline cannot train on any as_of"
            )
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if _learnable(days[middle]) else (middle, high)
        first = high
    return tuple(days[first:])


def early_moments(*ranks: int) -> list[str]:
    """The moments at `ranks` (0 = the first learnable one; increasing), closed up to fit a short history.

    Rank r is the r-th moment where the history has enough; otherwise the ranks
    shift down just enough to stay distinct and in order: with two moments,
    `early_moments(14, 30)` is both. Fails when the history has fewer moments
    than ranks.
    """
    if list(ranks) != sorted(set(ranks)) or not ranks or ranks[0] < 0:
        raise ValueError(f"ranks must be distinct, increasing and >= 0: {ranks}")
    found = moments()
    if len(found) < len(ranks):
        pytest.fail(
            f"this test needs {len(ranks)} distinct recorded_at dates with a learnable snapshot; "
            f"the source history has {len(found)}: {list(found)}"
        )
    last = len(found) - len(ranks)
    return [found[min(rank, last + index)] for index, rank in enumerate(ranks)]


def spare_dates(count: int, after: str, avoid: Iterable[str] = ()) -> list[str]:
    """`count` calendar dates after `after`, none in `avoid`, none after the last moment, earliest first.

    For as_of values that must differ (one tag each) without needing a snapshot
    of their own: each gives the snapshot of the latest moment at or before it.
    """
    last = moments()[-1]
    avoid = set(avoid)
    day, found = dt.date.fromisoformat(after), []
    while len(found) < count:
        day += dt.timedelta(days=1)
        text = day.isoformat()
        if text > last:
            pytest.fail(
                f"this test needs {count} dates between {after} and the last recorded date {last} "
                f"other than {sorted(avoid)}; the source history spans too few days"
            )
        if text not in avoid:
            found.append(text)
    return found
