"""Source values checked against the adapter's declared types and domains, as gather reads them.

A database driver hands over columns with the types it found (or guessed);
`to_snapshot` turns one such chunk into the snapshot's exact schema, or stops
at the first value that does not belong there: text in a numeric column, a
number that does not fit its type, a timestamp not in the source's format, a
NULL where the adapter requires a value, or a value outside its declared
domain. The error names the source table and column, the entity id and the
value, in one line: a snapshot is never written with, and no model is ever
trained on, a value the adapter says cannot be.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from src.pipeline.adapter import Adapter, Domain
from src.pipeline.source.moments import TIME_FORMAT

# TIME_FORMAT's exact layout, digit by digit.
TIME_PATTERN = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"


class SourceValueError(ValueError):
    """A source value the snapshot cannot hold; the message names where it is and what it is."""


def to_snapshot(chunk: pa.Table, adapter: Adapter) -> pa.Table:
    """`chunk` (the query's columns, as the driver typed them) in the snapshot schema, every value checked."""
    missing = [name for name in adapter.snapshot_schema.names if name not in chunk.column_names]
    if missing:
        raise SourceValueError(f"the snapshot query returned no columns {missing}")
    ids = _convert(chunk, adapter.id, adapter.snapshot_schema.field(adapter.id).type, None, adapter)
    columns = []
    for field in adapter.snapshot_schema:
        array = ids if field.name == adapter.id else _convert(chunk, field.name, field.type, ids, adapter)
        _check_domain(array, field.name, adapter.snapshot_domains.get(field.name, Domain()), ids, adapter)
        columns.append(array)
    return pa.Table.from_arrays(columns, schema=adapter.snapshot_schema)


def refuse(adapter: Adapter, column: str, entity, value, problem: str) -> SourceValueError:
    """The one-line error for a bad value: where it is (table, column, entity id), what it is, why not."""
    where = adapter.source_of(column)
    table, _, name = where.partition(".")
    return SourceValueError(
        f"source table {table!r}, column {name!r}, {adapter.id}={_shown(entity)}: {_shown(value)} {problem}"
    )


def _shown(value, limit: int = 80) -> str:
    # repr: quotes show a text for what it is, and a newline in it cannot break the one line.
    text = "NULL" if value is None else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _convert(chunk: pa.Table, name: str, target: pa.DataType, ids: pa.Array | None, adapter: Adapter) -> pa.Array:
    raw = chunk.column(name).combine_chunks()
    entity = (lambda i: ids[i].as_py()) if ids is not None else (lambda i: raw[i].as_py())

    def fail(index: int, problem: str) -> SourceValueError:
        return refuse(adapter, name, entity(index), raw[index].as_py(), problem)

    if pa.types.is_null(raw.type) or raw.null_count == len(raw):
        return pa.nulls(len(raw), target)
    exact_decimal = False
    if isinstance(raw, pa.ExtensionArray):
        # PostgreSQL's driver hands NUMERIC over as its exact decimal text.
        exact_decimal = getattr(raw.type, "type_name", None) == "numeric"
        raw = raw.storage
    if pa.types.is_decimal(raw.type):
        # As text too (a row driver's Decimal values), so both read paths parse the same digits.
        raw, exact_decimal = raw.cast(pa.string()), True
    if pa.types.is_binary(raw.type) or pa.types.is_large_binary(raw.type):
        # SQLite hands a whole chunk over as bytes when one value is a BLOB.
        raw = _cast(raw, pa.string(), lambda index: fail(index, "is not UTF-8 text"))
    textual = pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type)
    if pa.types.is_integer(target) or pa.types.is_floating(target):
        if textual and exact_decimal:
            raw = _cast(raw, pa.float64(), lambda index: fail(index, "is not a number"))
        elif textual:
            raise fail(_first_text(raw), f"is text in a numeric column ({target})")
        if not (pa.types.is_integer(raw.type) or pa.types.is_floating(raw.type)):
            raise fail(_first_valid(raw), f"is a {raw.type}, not a number")
        array = _cast(
            raw, target, lambda index: fail(index, f"does not fit the column's type ({target}) without changing it")
        )
        if pa.types.is_floating(target):
            bad = pc.invert(pc.is_finite(array))
            if pc.any(bad).as_py():
                raise fail(_index(bad), "is not a finite number")
        return array
    if pa.types.is_timestamp(target):
        if pa.types.is_timestamp(raw.type):
            return raw.cast(target, safe=True)
        if not textual:
            raise fail(_first_valid(raw), f"is not a timestamp text ({TIME_FORMAT}, UTC)")
        parsed = pc.strptime(raw, format=TIME_FORMAT, unit="us", error_is_null=True)
        # strptime also takes "2013-1-1 5:00:00" and rolls "02-30" over into March:
        # only the exact layout, parsed to the day it says, is the source's one format.
        exact = pc.match_substring_regex(raw, TIME_PATTERN)
        if pc.all(exact).as_py():
            written_day = pc.utf8_slice_codeunits(raw, 8, 10).cast(pa.int8())
            exact = pc.equal(pc.day(parsed), written_day)
        bad = pc.and_(raw.is_valid(), pc.invert(exact.fill_null(False)))
        if pc.any(bad).as_py():
            raise fail(_index(bad), f"is not a timestamp in the source's format ({TIME_FORMAT}, UTC)")
        return parsed.cast(target)
    if pa.types.is_string(target) or pa.types.is_large_string(target):
        if not textual:
            raise fail(_first_valid(raw), "is a number in a text column")
        return raw.cast(target)
    return _cast(raw, target, lambda index: fail(index, f"does not fit the column's type ({target})"))


def _check_domain(array: pa.Array, name: str, domain: Domain, ids: pa.Array, adapter: Adapter) -> None:
    def fail(bad: pa.Array, problem: str) -> SourceValueError:
        index = _index(bad)
        return refuse(adapter, name, ids[index].as_py(), array[index].as_py(), problem)

    if (domain.required or name == adapter.id) and array.null_count:
        raise fail(array.is_null(), "where the adapter requires a value")
    if domain.low is not None or domain.high is not None:
        bounds = pc.min_max(array).as_py()
        below = domain.low is not None and bounds["min"] is not None and bounds["min"] < domain.low
        above = domain.high is not None and bounds["max"] is not None and bounds["max"] > domain.high
        if below or above:
            outside = pc.less(array, domain.low) if below else pc.greater(array, domain.high)
            shown = f"{'' if domain.low is None else domain.low}..{'' if domain.high is None else domain.high}"
            raise fail(outside, f"is outside the allowed range {shown}")
    if domain.values is not None:
        allowed = pc.is_in(array, value_set=pa.array(domain.values, array.type)).fill_null(True)
        if not pc.all(allowed).as_py():
            raise fail(pc.invert(allowed), f"is not one of {list(domain.values)}")


def _index(mask: pa.Array) -> int:
    return pc.index(mask.fill_null(False), True).as_py()


def _first_valid(raw: pa.Array) -> int:
    return _index(raw.is_valid())


def _first_text(raw: pa.Array) -> int:
    """The first value that is not a number written as text.

    SQLite's driver turns a whole chunk into text when one value is text, so
    the numbers around it arrive as text too: point at the culprit.
    """
    for index, value in enumerate(raw.to_pylist()):
        if value is None:
            continue
        try:
            if math.isfinite(float(value)):
                continue
        except ValueError:
            pass
        return index
    return _first_valid(raw)


def _cast(raw: pa.Array, target: pa.DataType, fail: Callable[[int], SourceValueError]) -> pa.Array:
    """`raw` cast safely (nothing truncated or wrapped), or `fail` at the first value that does not fit."""
    try:
        return raw.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    low, high = 0, len(raw)  # bisect: the first failing value is in raw[low:high]
    while high - low > 1:
        middle = (low + high) // 2
        try:
            raw.slice(low, middle - low).cast(target, safe=True)
            low = middle
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            high = middle
    raise fail(low)
