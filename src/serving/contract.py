"""The input contract of the deployed model, derived from its manifest.

The manifest records what the model was fitted on: the feature columns in
their order, which are categorical (with their recorded category lists) and
which numeric, and the id column. This module turns that into the checks a
caller's rows must pass before they reach the model, and into the pydantic
row model that the HTTP service publishes as its OpenAPI schema. Both come
from one `Contract`, so the batch command and the service accept the same rows.

What passes: every feature column present (extra columns are ignored and
reported); categorical values are text or missing (values off the recorded
list go to the unknown bucket and are counted); numeric values are numbers or
missing (missing ones are imputed with the values learned in training), finite,
no larger in magnitude than float32 holds, and inside the manifest's `ranges`
where the column has one.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, create_model

from src.pipeline.adapter import Domain, Inputs, load_inputs

# How many offending rows an error message names per column.
_EXAMPLES = 3
# Up to this many rows, set lookups in Python beat pandas' per-call setup (unknown_counts).
_FEW_ROWS = 256
# The largest magnitude a numeric input may have: float32's. scikit-learn's
# trees (a random forest, or a stack with one) convert their input to float32
# and refuse anything larger deep inside predict_proba, after the checks.
LARGEST = float(np.finfo(np.float32).max)
_INT64 = np.iinfo(np.int64)
# The service's id bounds: int64's, less 1,024, so that each bound is exactly a
# float64. JSON tooling that reads the published schema's bound as a float
# (int64's max becomes 2**63) would otherwise generate an id the service refuses.
_ID_LIMIT = 2**63 - 1024


class ContractError(ValueError):
    """Input rows do not meet the contract; the message names every problem."""


def _rows_with(frame: pd.DataFrame, required: Sequence[str], lacks: str) -> pd.DataFrame:
    """`frame` with a fresh index, once it is a frame with rows, no duplicated column and every `required`
    one; else ContractError (`lacks` formatted with the missing names)."""
    if not isinstance(frame, pd.DataFrame):
        raise ContractError(f"input must be a pandas DataFrame, got {type(frame).__name__}")
    if len(frame) == 0:
        raise ContractError("input has no rows")
    duplicated = sorted({str(name) for name in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        raise ContractError(f"input has duplicated columns {duplicated}")
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise ContractError(lacks.format(missing=missing))
    return frame.reset_index(drop=True)


@dataclass(frozen=True)
class Numbering:
    """How messages number rows: `noun` and the number of the first data row."""

    noun: str
    first: int


# Rows as positions, counted from 0: the index of a row in a frame or in a
# request's "rows" list.
ROWS = Numbering("row", 0)
# Rows of a CSV file by line, line 1 being the header. A quoted field that
# spans lines, or a blank line (skipped), shifts the rows after it.
CSV_LINES = Numbering("CSV line", 2)


@dataclass(frozen=True)
class Checked:
    """Rows that passed: their feature columns, plus what was noticed.

    `features` (the frame scikit-learn is given, in the recorded order) is
    built on first use: a small batch served by the compiled pipeline reads
    `columns` alone, and building a frame costs more than predicting one row.
    """

    columns: dict[str, pd.Series | np.ndarray]  # numeric ones as float64 arrays
    order: tuple[str, ...]
    ids: pd.Series | None
    ignored_columns: list[str]
    unknown_categories: dict[str, dict[str, int]]

    @functools.cached_property
    def features(self) -> pd.DataFrame:
        return pd.DataFrame(self.columns, columns=list(self.order))

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values())))


@dataclass(frozen=True)
class Contract:
    id: str
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    features: tuple[str, ...]
    categories: dict[str, list[str]]
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    # Numeric values the model learned in training (the imputer's statistics:
    # medians, for impute_strategy median), the published examples.
    typical: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> Contract:
        features = tuple(manifest["features"])
        categorical, numeric = tuple(manifest["categorical"]), tuple(manifest["numeric"])
        if set(features) != set(categorical) | set(numeric) or len(features) != len(categorical) + len(numeric):
            raise ContractError("manifest: features must be exactly its categorical and numeric columns")
        return cls(
            id=manifest["id"],
            categorical=categorical,
            numeric=numeric,
            features=features,
            categories={name: list(manifest["categories"][name]) for name in categorical},
            ranges={name: tuple(bounds) for name, bounds in (manifest.get("ranges") or {}).items()},
            typical=learned_values(manifest.get("learned") or {}, numeric),
        )

    def example(self) -> dict[str, Any]:
        """One row that a caller may send as it is: each numeric feature at the
        value learned in training (inside its range), each categorical one at
        its first recorded category; no id, no other key."""
        row: dict[str, Any] = {}
        for name in self.features:
            if name in self.categories:
                row[name] = self.categories[name][0] if self.categories[name] else None
                continue
            low, high = self.ranges.get(name, (None, None))
            value = self.typical.get(name)
            if value is None:  # nothing learned: the range's low end, else 0 inside it
                value = float(low) if low is not None else 0.0
            value = max(value, low) if low is not None else value
            row[name] = min(value, high) if high is not None else value
        return row

    def check(self, frame: pd.DataFrame, numbering: Numbering = ROWS) -> Checked:
        """Validate `frame`; return its features in the recorded column order.

        Raises ContractError listing every problem found, not just the first,
        with rows numbered as `numbering` says.
        """
        frame = _rows_with(frame, self.features, "input lacks required columns {missing}")
        problems: list[str] = []
        columns = {}
        for name in self.categorical:
            columns[name] = _categorical(frame[name], problems, numbering)
        plain = self._plain_numeric(frame)
        if plain is not None:
            columns.update(plain)
        else:
            for name in self.numeric:
                columns[name] = _numeric(frame[name], self.ranges.get(name, (None, None)), problems, numbering)
        ids = _ids(frame[self.id], problems, numbering) if self.id in frame.columns else None
        if problems:
            raise ContractError("input does not meet the model's contract:\n  " + "\n  ".join(problems))
        return Checked(
            columns=columns,
            order=self.features,
            ids=ids,
            ignored_columns=[str(name) for name in frame.columns if name not in self.features and name != self.id],
            unknown_categories=self.unknown_counts(columns),
        )

    def validated(self, rows: Sequence[BaseModel]) -> Checked:
        """Checked, for rows that row_model() validated (the service's): the columns only.

        Such rows already meet every rule check() applies, since the row model
        is built from the same lists, bounds and types (text or null, finite
        numbers inside each range); the id is not a feature, and the service
        echoes it itself. Building a frame to check them again would cost more
        than predicting a row. tests/template/test_compiled.py holds both paths
        to the same columns and predictions.
        """
        columns: dict[str, pd.Series | np.ndarray] = {
            name: np.array([getattr(row, name) for row in rows], dtype=object) for name in self.categorical
        }
        for name in self.numeric:  # None (null) is NaN, as the imputer expects
            columns[name] = np.array([getattr(row, name) for row in rows], dtype=np.float64)
        extra = sorted({key for row in rows for key in (row.model_extra or {})})
        return Checked(
            columns=columns,
            order=self.features,
            ids=None,
            ignored_columns=extra,
            unknown_categories=self.unknown_counts(columns),
        )

    @functools.cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per numeric column, in order: the lowest and highest value it may hold (range, then float32)."""
        bounds = [self.ranges.get(name, (None, None)) for name in self.numeric]
        lows = np.array([-LARGEST if low is None else max(low, -LARGEST) for low, _ in bounds], dtype=np.float64)
        highs = np.array([LARGEST if high is None else min(high, LARGEST) for _, high in bounds], dtype=np.float64)
        return lows, highs

    def _plain_numeric(self, frame: pd.DataFrame) -> dict[str, np.ndarray] | None:
        """Every numeric column as float64, checked in one step, when each holds numbers (or gaps)
        inside its bounds: the usual case, where column-by-column checks cost more than a one-row
        prediction. Else None, and _numeric checks each column to name its problems."""
        if not self.numeric:
            return {}
        values = np.empty((len(frame), len(self.numeric)), dtype=np.float64)
        for position, name in enumerate(self.numeric):
            column = frame[name]
            if not pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
                return None
            values[:, position] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        lows, highs = self._bounds
        with np.errstate(invalid="ignore"):
            inside = np.isnan(values) | ((values >= lows) & (values <= highs))
        if not inside.all():
            return None
        return {name: values[:, position] for position, name in enumerate(self.numeric)}

    @functools.cached_property
    def _known(self) -> dict[str, frozenset[str]]:
        return {name: frozenset(values) for name, values in self.categories.items()}

    def unknown_counts(self, columns: dict[str, pd.Series | np.ndarray]) -> dict[str, dict[str, int]]:
        """Per categorical column: values not on the recorded list, and missing values (model.count_unknown's
        rule, by set lookups: pandas' isin on text rebuilds its value set on every call)."""
        counts = {}
        for name, known in self._known.items():
            column = columns[name]
            if len(column) > _FEW_ROWS:  # pandas' vectorised isin, once its per-call setup pays
                series = pd.Series(column, copy=False)
                missing = int(series.isna().sum())
                on_list = int(series.isin(self.categories[name]).sum())
            else:
                values = column.tolist()
                # Checked text columns hold text or gaps (None, NaN, pd.NA): anything but text is missing.
                missing = sum(not isinstance(value, str) for value in values)
                on_list = sum(value in known for value in values)
            counts[name] = {"unknown": len(column) - missing - on_list, "missing": missing}
        return counts

    def row_model(self) -> type[BaseModel]:
        """One input row as a pydantic model: the service's OpenAPI schema.

        Every feature is required (send null for a missing value); extra keys
        are allowed, ignored and reported; the id is optional and echoed back.
        The schema's examples are the manifest's (example()), and it declares
        the extra keys as what they are, so Swagger UI neither shows float32's
        bounds as values nor invents an `additionalProp1` field.
        """
        example = self.example()
        fields: dict[str, Any] = {
            # int64, as the batch command's ids and the predictions files hold them.
            self.id: (
                Annotated[StrictInt, BeforeValidator(_whole), Field(ge=-_ID_LIMIT, le=_ID_LIMIT)] | None,
                Field(default=None, description="Optional; echoed in the prediction."),
            ),
        }
        for name in self.categorical:
            values = self.categories[name]
            fields[name] = (
                Annotated[StrictStr, AfterValidator(_encodable)] | None,
                Field(
                    description=f"One of {len(values)} recorded categories; any other value (or null) "
                    "goes to the unknown bucket and is counted in the response.",
                    examples=[example[name]],
                ),
            )
        for name in self.numeric:
            low, high = self.ranges.get(name, (None, None))
            ge = -LARGEST if low is None else max(low, -LARGEST)
            le = LARGEST if high is None else min(high, LARGEST)
            fields[name] = (
                Annotated[float | None, Field(strict=True, ge=ge, le=le, allow_inf_nan=False)],
                Field(
                    description="A number"
                    + _range_text(low, high)
                    + "; null is imputed as in training"
                    + (f" ({self.typical[name]:g})." if name in self.typical else "."),
                    examples=[example[name]],
                ),
            )
        # An extra key that is a lone surrogate is only named back, in
        # ignored_columns, where the response's JSON escapes it.
        config = ConfigDict(extra="allow", json_schema_extra=_row_schema(example))
        return create_model("Row", __config__=config, **fields)


@dataclass(frozen=True)
class RawContract:
    """The second contract: entities as gathered (snapshot rows), turned into model rows by the
    adapter's own row-local derivation (Inputs.derive), the code featurize runs.

    A raw row holds the snapshot columns the derivation reads, with the
    snapshot's types and domains; the snapshot's other columns (and any key)
    are ignored and reported. The derived rows then pass the engineered
    Contract like any other rows.
    """

    id: str
    inputs: Inputs

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> RawContract | None:
        """From the manifest's dataset: None if its adapter declares no INPUTS, or is not here.

        A deployment without the adapter's package (an image built before it
        was copied, or a model moved alone) answers engineered rows only,
        says so in the log, and /info's raw_contract is null.
        """
        name = manifest.get("dataset")
        if not name:
            return None
        try:
            inputs = load_inputs(name)
        except ModuleNotFoundError as error:
            if error.name not in ("src.datasets", f"src.datasets.{name}"):
                raise
            logging.getLogger(__name__).warning(
                "the adapter package src/datasets/%s/ is not here: raw rows "
                "(/predict/raw, predict --raw) are not served",
                name,
            )
            return None
        return cls(id=manifest["id"], inputs=inputs) if inputs is not None else None

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.inputs.schema.names)

    def check(self, frame: pd.DataFrame, numbering: Numbering = ROWS) -> tuple[pd.DataFrame, list[str]]:
        """Validate raw rows and derive them: ([id], *features) rows, and the ignored columns.

        Raises ContractError naming every column that is missing, of a wrong
        type, or outside its domain.
        """
        frame = _rows_with(
            frame,
            self.columns,
            "raw input lacks required columns {missing} (the snapshot's columns that the features are derived from)",
        )
        problems: list[str] = []
        arrays = [
            _raw_column(
                frame[column.name], column.type, self.inputs.domains.get(column.name, Domain()), problems, numbering
            )
            for column in self.inputs.schema
        ]
        ids = _ids(frame[self.id], problems, numbering) if self.id in frame.columns else None
        if problems:
            raise ContractError("raw input does not meet the contract:\n  " + "\n  ".join(problems))
        rows = pa.Table.from_arrays(arrays, schema=self.inputs.schema).to_pandas()
        rows.insert(0, self.id, ids if ids is not None else np.arange(len(rows), dtype=np.int64))
        try:
            derived = self.inputs.derive(rows).reset_index(drop=True)
        except ValueError as error:  # e.g. parts of a date that make no calendar date
            raise ContractError(f"raw input: {error}") from None
        if ids is None:
            derived = derived.drop(columns=self.id)
        ignored = [str(name) for name in frame.columns if name not in self.columns and name != self.id]
        return derived, ignored

    def row_model(self) -> type[BaseModel]:
        """One raw row as a pydantic model: /predict/raw's OpenAPI schema.

        Every input column is required (null where missing, unless its domain
        requires a value); other keys are allowed, ignored and reported.
        """
        fields: dict[str, Any] = {
            self.id: (
                Annotated[StrictInt, BeforeValidator(_whole), Field(ge=-_ID_LIMIT, le=_ID_LIMIT)] | None,
                Field(default=None, description="Optional; echoed in the prediction."),
            ),
        }
        for column in self.inputs.schema:
            domain = self.inputs.domains.get(column.name, Domain())
            described = f"Snapshot column ({column.type}){_domain_text(domain)}."
            if pa.types.is_string(column.type):
                kind: Any = Annotated[
                    StrictStr, AfterValidator(_encodable), AfterValidator(functools.partial(_one_of, domain.values))
                ]
            elif pa.types.is_integer(column.type):
                info = np.iinfo(column.type.to_pandas_dtype())
                low = info.min if domain.low is None else max(info.min, int(np.ceil(domain.low)))
                high = info.max if domain.high is None else min(info.max, int(np.floor(domain.high)))
                # Field before the validator: so the bounds reach the published schema.
                kind = Annotated[StrictInt, Field(ge=low, le=high), BeforeValidator(_whole)]
            else:
                low = -LARGEST if domain.low is None else max(domain.low, -LARGEST)
                high = LARGEST if domain.high is None else min(domain.high, LARGEST)
                kind = Annotated[float, Field(strict=True, ge=low, le=high, allow_inf_nan=False)]
            fields[column.name] = (kind if domain.required else kind | None, Field(description=described))
        config = ConfigDict(extra="allow", json_schema_extra=_row_schema(None))
        return create_model("RawRow", __config__=config, **fields)


def _domain_text(domain: Domain) -> str:
    text = _range_text(domain.low, domain.high)
    if domain.values is not None:
        text += f", one of {list(domain.values)}"
    return text + ("; required" if domain.required else "; null if unknown")


def _one_of(values: tuple[str, ...] | None, text: str) -> str:
    if values is not None and text not in values:
        raise ValueError(f"{text!r} is not one of {list(values)}")
    return text


def _raw_column(
    column: pd.Series, kind: pa.DataType, domain: Domain, problems: list[str], numbering: Numbering
) -> pa.Array:
    """One raw column as Arrow of the snapshot's type, with its domain checked; problems are appended."""
    name = column.name
    empty = pa.nulls(len(column), kind)
    present = column.notna().to_numpy()
    if pd.api.types.is_bool_dtype(column.dtype):
        problems.append(f"{name}: expected {kind}, got booleans")
        return empty
    if pa.types.is_string(kind):
        wrong = present & ~column.map(lambda value: isinstance(value, str)).to_numpy()
    elif pd.api.types.is_numeric_dtype(column.dtype):
        wrong = np.zeros(len(column), dtype=bool)
    else:
        wrong = present & ~column.map(_is_number).to_numpy()
    if wrong.any():
        example = _plain(column[wrong].iloc[0])
        problems.append(
            f"{name}: expected {'text' if pa.types.is_string(kind) else kind} or missing, got "
            f"{type(example).__name__} {example!r} at {_rows(wrong, numbering)}"
        )
        return empty
    try:
        array = pa.array(
            column.astype(object).where(column.notna(), None).tolist(),
            type=pa.string() if pa.types.is_string(kind) else None,
        ).cast(kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as error:
        problems.append(f"{name}: not {kind}: {error}")
        return empty
    if domain.required and not present.all():
        problems.append(f"{name}: missing values at {_rows(~present, numbering)}; the column is required")
    if domain.low is not None or domain.high is not None:
        values = array.to_numpy(zero_copy_only=False).astype(np.float64)
        outside = (values < domain.low if domain.low is not None else False) | (
            values > domain.high if domain.high is not None else False
        )
        outside = np.asarray(outside) & present
        if outside.any():
            problems.append(
                f"{name}: {_plain(column[outside].iloc[0])!r} outside the allowed range"
                f"{_range_text(domain.low, domain.high)} at {_rows(outside, numbering)}"
            )
    if domain.values is not None:
        off = present & ~column.isin(domain.values).to_numpy()
        if off.any():
            problems.append(
                f"{name}: {column[off].iloc[0]!r} is not one of {list(domain.values)} at {_rows(off, numbering)}"
            )
    return array


def learned_values(learned: dict[str, Any], numeric: tuple[str, ...]) -> dict[str, float]:
    """Per numeric column, the first imputation statistic the manifest's `learned` records for it."""
    values: dict[str, float] = {}
    for key, statistics in learned.items():
        if key.endswith("impute_values") and isinstance(statistics, dict):
            for name, value in statistics.items():
                if name in numeric and isinstance(value, (int, float)) and name not in values:
                    values[name] = float(value)
    return values


def _row_schema(example: dict[str, Any] | None) -> Any:
    def extra(schema: dict[str, Any]) -> None:
        if example is not None:
            schema["examples"] = [example]
        # Allowed, ignored and named back: a key of any value, not an object to fill in.
        schema["additionalProperties"] = {
            "description": "Any other key is accepted, not used, and named in the response's ignored_columns."
        }

    return extra


def _whole(value: Any) -> Any:
    """7.0 as 7: JSON does not tell them apart, and JSON Schema's "integer" counts both."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _encodable(text: str) -> str:
    """Refuse text that UTF-8 cannot hold: JSON's escapes allow a lone surrogate
    such as \\ud800, which Python's parser accepts and Arrow cannot store."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        # ascii(): the message itself must be encodable to be sent.
        raise ValueError(
            f"not valid Unicode text: {ascii(text[error.start : error.end])} at character "
            f"{error.start} is a lone surrogate"
        ) from None
    return text


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" from {low:g} to {high:g}"
    if low is not None:
        return f" of at least {low:g}"
    if high is not None:
        return f" of at most {high:g}"
    return ""


def _rows(mask: np.ndarray | pd.Series, numbering: Numbering) -> str:
    positions = np.flatnonzero(np.asarray(mask))
    shown = ", ".join(str(p + numbering.first) for p in positions[:_EXAMPLES])
    more = f" and {len(positions) - _EXAMPLES} more" if len(positions) > _EXAMPLES else ""
    return f"{numbering.noun}{'s' if len(positions) > 1 else ''} {shown}{more}"


def _categorical(column: pd.Series, problems: list[str], numbering: Numbering) -> pd.Series:
    if pd.api.types.is_string_dtype(column.dtype) and column.dtype != object:
        return column  # pandas' str dtype (Parquet, CSV): text or missing already
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(object)
    present = column.notna()
    wrong = present & ~column.map(lambda value: isinstance(value, str))
    if wrong.any():
        example = _plain(column[wrong].iloc[0])
        problems.append(
            f"{column.name}: expected text or missing, got {type(example).__name__} "
            f"{example!r} at {_rows(wrong, numbering)}"
        )
        return column
    if not present.any():
        # All missing, whatever the reader made of it: unknown bucket throughout.
        return pd.Series([None] * len(column), dtype=object, name=column.name)
    return column


def _numeric(
    column: pd.Series, bounds: tuple[float | None, float | None], problems: list[str], numbering: Numbering
) -> pd.Series | np.ndarray:
    name = column.name
    if pd.api.types.is_bool_dtype(column.dtype):
        problems.append(f"{name}: expected numbers, got booleans")
        return column
    if not pd.api.types.is_numeric_dtype(column.dtype):
        present = column.notna()
        wrong = present & ~column.map(_is_number)
        if wrong.any() and pd.api.types.is_string_dtype(column.dtype) and column.dtype != object:
            # Text from a reader (CSV): one unparsable value makes the whole
            # column text, so name the rows that are not numbers, not every row.
            unparsable = present & pd.to_numeric(column, errors="coerce").isna()
            wrong = unparsable if unparsable.any() else wrong
        if wrong.any():
            example = _plain(column[wrong].iloc[0])
            problems.append(
                f"{name}: expected a number or missing, got {type(example).__name__} "
                f"{example!r} at {_rows(wrong, numbering)}"
            )
            return column
        # Python's integers have no bound; float() would raise OverflowError past float64.
        huge = present & column.map(lambda value: isinstance(value, (int, np.integer)) and abs(value) > LARGEST)
        if huge.any():
            problems.append(
                f"{name}: an integer beyond {LARGEST:g} in magnitude, the most a model input may be, "
                f"at {_rows(huge, numbering)}"
            )
            return column
        column = pd.Series([float(v) if pd.notna(v) else np.nan for v in column], dtype=np.float64, name=name)
    # A no-op for float64 columns: the model sees the caller's exact values.
    # Checked on the numpy array: pandas' per-operation overhead dominates
    # single-row latency.
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.isinf(values)
    if infinite.any():
        problems.append(f"{name}: infinite values at {_rows(infinite, numbering)}")
    low, high = bounds
    outside = np.zeros(len(values), dtype=bool)
    if low is not None:
        outside |= values < low
    if high is not None:
        outside |= values > high
    outside &= ~infinite
    if outside.any():
        example = float(values[outside][0])
        problems.append(
            f"{name}: {example!r} outside the allowed range{_range_text(low, high)} at {_rows(outside, numbering)}"
        )
    huge = (np.abs(values) > LARGEST) & ~infinite & ~outside
    if huge.any():
        example = float(values[huge][0])
        problems.append(
            f"{name}: {example!r} is beyond {LARGEST:g} in magnitude, the most a model input may be, "
            f"at {_rows(huge, numbering)}"
        )
    return values  # float64; a Series per column would cost more than a one-row prediction


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, so messages read 1.0, not np.float64(1.0)."""
    return value.item() if isinstance(value, np.generic) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _ids(column: pd.Series, problems: list[str], numbering: Numbering) -> pd.Series | None:
    if column.isna().any():
        problems.append(f"{column.name}: missing ids at {_rows(column.isna(), numbering)}")
        return None
    if not pd.api.types.is_integer_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        problems.append(f"{column.name}: ids must be integers, got {column.dtype}")
        return None
    beyond = column > _INT64.max if pd.api.types.is_unsigned_integer_dtype(column.dtype) else None
    if beyond is not None and beyond.any():  # astype would wrap them around into other ids
        problems.append(f"{column.name}: ids beyond the int64 range at {_rows(beyond, numbering)}")
        return None
    return column.astype(np.int64)
