"""The source's one time format, and the parsing of moments (`as_of`, `recorded_at`) into it.

No SQL here: the params schema parses `as_of` with it, and serving imports the
params schema without any database library.
"""

from __future__ import annotations

import datetime as dt

# The source's one timestamp format: UTC, second precision, sortable as text.
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def moment_text(value: str) -> str:
    """A date or UTC timestamp as the source's timestamp text.

    A bare date (YYYY-MM-DD) is the end of that day, so `as_of: 2013-06-30`
    includes everything recorded on June 30th.
    """
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            moment = dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.UTC)
        else:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise ValueError("a timestamp needs a time zone, e.g. 2013-06-30T12:00:00Z")
        utc = moment.astimezone(dt.UTC)  # year 1 at +01:00 overflows here
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(
            f"{value!r} is neither a date (YYYY-MM-DD) nor a UTC timestamp (YYYY-MM-DDTHH:MM:SSZ): {error}"
        ) from None
    # isoformat, not strftime: %Y leaves years before 1000 unpadded on glibc,
    # and the text must compare in time order with TIME_FORMAT's.
    return utc.replace(microsecond=0, tzinfo=None).isoformat(sep=" ")


def as_of_timestamp(value: str) -> str:
    """`as_of` as the source's timestamp text (UTC); a bare date is the end of that day.

    The params schema calls this once (params.gather.moment holds the result);
    code that reads params.yaml uses that value rather than parsing again.
    """
    try:
        return moment_text(value)
    except ValueError as error:
        raise ValueError(f"as_of {error}") from None


def refuse_future(moment: str, now: dt.datetime | None = None) -> None:
    """Raise ValueError if `moment` (the source's timestamp text) is after now (UTC).

    Both as_of and a version's recorded_at must have passed: rows can still be
    recorded at or before a future moment, and a version dated in the future
    would make every later ingest (dated now) look back-dated.
    """
    current = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime(TIME_FORMAT)
    if moment > current:
        raise ValueError(
            f"is in the future ({moment} UTC; now {current} UTC): a snapshot is a pure function of "
            "as_of only while nothing can still be recorded at or before it; use a moment that has "
            "passed (a bare date means the end of that day)"
        )
