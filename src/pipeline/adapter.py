"""The dataset adapter contract: all that the generic pipeline knows of a data set.

A data set is one package under src/datasets/ whose `ADAPTER` is an `Adapter`;
params.yaml's `dataset.adapter` names the one in use. The stages, the model,
serving and the tools read names, schemas and functions from it and never
mention a data set themselves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # an adapter's package imports SQLAlchemy to declare its tables; the contract need not
    import sqlalchemy as sa

# The placeholder that every value not on a recorded category list (and every
# missing value) is mapped to before encoding: one explicit unknown bucket.
UNKNOWN = "__unknown__"

# The task a target implies. One rule, here (task_of), read everywhere: the
# stages through Adapter.task, serving through the manifest's target_type.
CLASSIFICATION, REGRESSION = "classification", "regression"


def task_of(target_type: pa.DataType) -> str:
    """A float target (float32, float64) is a regression; integer or text labels are classes.

    Two classes are a binary task and more a multiclass one: params.yaml's
    recorded `classes` tell those apart, and a regression records none.
    """
    if pa.types.is_floating(target_type):
        return REGRESSION
    if pa.types.is_integer(target_type) or pa.types.is_string(target_type):
        return CLASSIFICATION
    raise ValueError(
        f"target_type must be a float (regression), integer or string (classification) type, got {target_type}"
    )


class NoParams(BaseModel):
    """An adapter section with no settings of its own (only `adapter:`)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


@dataclass(frozen=True)
class Domain:
    """The values a snapshot column may hold by its meaning; gather stops at any other.

    Bounds are inclusive (None = open) and apply to numeric columns; `values`
    lists the allowed texts of a text column; `required` refuses NULL. Declare
    meanings, not the data's observed extremes, which would refuse a legitimate
    new value.
    """

    low: float | None = None
    high: float | None = None
    values: tuple[str, ...] | None = None
    required: bool = False


@dataclass(frozen=True)
class Inputs:
    """How an entity as gathered (a snapshot row) becomes a model row: what serving may import.

    `schema` lists the snapshot columns the derivation reads, with the
    snapshot's types; `domains` their allowed values (as snapshot_domains).
    `derive(rows)` returns [id, *features] for every row, in the rows' order
    and index: row-local, with no target and no exclusion. The adapter's
    derive_features calls it, so featurize and the service run the same code.
    The module that defines an adapter's INPUTS (its package's __init__) must
    not import the source side (SQLAlchemy, src.pipeline.source): serving
    imports it, and tests/template/test_imports.py checks.
    """

    schema: pa.Schema
    derive: Callable[[pd.DataFrame], pd.DataFrame]
    domains: Mapping[str, Domain] = field(default_factory=dict)


@dataclass(frozen=True)
class Adapter:
    """What a data set declares. Every field is read by generic code; see the README's "Adapt to your data"."""

    name: str  # the package name under src/datasets/, as params.yaml's dataset.adapter
    title: str  # for people: the service's title, messages
    entity: str  # what one snapshot row is, in the plural ("orders", "patients")
    id: str  # integer id, unique per snapshot row: keys the split and every ORDER BY
    target: str  # the label column of the feature rows
    # pa.int8() / pa.int64() for integer labels, pa.string() for text labels (a classification);
    # pa.float64() / pa.float32() for a number to predict (a regression): see task_of.
    target_type: pa.DataType
    # The source: the tables (and columns) the snapshot query reads, declared
    # once; gather checks them before querying, and a demo builder creates them.
    source_tables: sa.MetaData
    snapshot_query: str  # SQL bound to :as_of; must end with ORDER BY the id
    snapshot_schema: pa.Schema  # the snapshot's columns and exact types
    categorical: tuple[str, ...]  # model inputs encoded with the recorded category lists
    numeric: tuple[str, ...]  # model inputs imputed (and scaled for linear models)
    # (snapshot rows, adapter params) -> (feature rows [id, *features, target] in id order, counts of
    # excluded rows). featurize calls it on chunks of the snapshot, in id order, and sums the counts:
    # it must be row-local (each feature row from its own snapshot row alone: no ranks, means or
    # "first seen" across rows) and accept a chunk in which no row is kept.
    derive_features: Callable[[pd.DataFrame, Any], tuple[pd.DataFrame, dict[str, int]]]
    # Allowed values of numeric features by their meaning (inclusive; None = open).
    feature_ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    # Allowed values of snapshot columns (the id is always required); gather
    # checks every value read from the source against them and against the schema.
    snapshot_domains: Mapping[str, Domain] = field(default_factory=dict)
    # Where a snapshot column comes from, as "table.column", for error messages;
    # unnamed columns come from the entity table's column of the same name.
    snapshot_sources: Mapping[str, str] = field(default_factory=dict)
    params_model: type[BaseModel] = NoParams  # the adapter's own params section (dataset:)
    # Builds a demo source: a SQLite file at a path (`make source`); `python -m
    # src.tools.source --url URL` copies its tables to any database. None when
    # the data arrives another way (e.g. `python -m src.tools.ingest`). Keep the
    # builder under src/demos/ and import it by name inside this function: the
    # stages then do not depend on it (the example's does so).
    build_demo_source: Callable[..., dict[str, int]] | None = None
    # The row-local derivation from snapshot rows, for the service's raw rows
    # (/predict/raw, predict --raw); None when only engineered rows are served.
    # The same object as the package's INPUTS (load_inputs), checked by load().
    inputs: Inputs | None = None

    @property
    def task(self) -> str:
        """CLASSIFICATION or REGRESSION, from the target's type (task_of)."""
        return task_of(self.target_type)

    @property
    def features(self) -> tuple[str, ...]:
        return self.categorical + self.numeric

    @property
    def entity_table(self) -> str:
        """The source table whose rows become snapshot rows: the one with the id column (else the first).

        Its declaration is `source_tables.tables[entity_table]`: this is the one place that picks it.
        """
        tables = list(self.source_tables.tables.values())
        return next((table.name for table in tables if self.id in table.c), tables[0].name if tables else "?")

    def source_of(self, column: str) -> str:
        """The source "table.column" a snapshot column is read from."""
        return self.snapshot_sources.get(column, f"{self.entity_table}.{column}")

    @property
    def features_schema(self) -> pa.Schema:
        """Feature rows: id, categorical as text, numeric as float64, then the target."""
        return pa.schema(
            [(self.id, pa.int64())]
            + [(name, pa.string()) for name in self.categorical]
            + [(name, pa.float64()) for name in self.numeric]
            + [(self.target, self.target_type)]
        )

    def parse_params(self, section: Mapping[str, Any]) -> BaseModel:
        """This adapter's params (the `dataset:` section less `adapter`), validated."""
        return self.params_model.model_validate({k: v for k, v in section.items() if k != "adapter"})

    def check(self) -> None:
        """Refuse an inconsistent declaration early, naming what is wrong."""
        problems = []
        overlap = set(self.categorical) & set(self.numeric)
        if overlap:
            problems.append(f"columns both categorical and numeric: {sorted(overlap)}")
        if self.id in self.features or self.target in self.features:
            problems.append("the id and the target must not be features")
        if self.id not in self.snapshot_schema.names:
            problems.append(f"the snapshot schema lacks the id {self.id!r}")
        unknown_ranges = sorted(set(self.feature_ranges) - set(self.numeric))
        if unknown_ranges:
            problems.append(f"feature_ranges name non-numeric columns {unknown_ranges}")
        problems += self._domain_problems()
        try:
            task_of(self.target_type)
        except ValueError as error:
            problems.append(str(error))
        problems += self._inputs_problems()
        if problems:
            raise ValueError(f"dataset adapter {self.name!r}: " + "; ".join(problems))

    def _inputs_problems(self) -> list[str]:
        if self.inputs is None:
            return []
        problems = []
        for column in self.inputs.schema:
            if column.name not in self.snapshot_schema.names:
                problems.append(f"inputs column {column.name!r} is not in the snapshot schema")
            elif self.snapshot_schema.field(column.name).type != column.type:
                problems.append(
                    f"inputs column {column.name!r} is {column.type}, the snapshot's is "
                    f"{self.snapshot_schema.field(column.name).type}"
                )
            elif not any(
                check(column.type) for check in (pa.types.is_integer, pa.types.is_floating, pa.types.is_string)
            ):
                problems.append(
                    f"inputs column {column.name!r} is {column.type}: raw rows take integer, float and text columns"
                )
            elif self.inputs.domains.get(column.name, Domain()) != self.snapshot_domains.get(column.name, Domain()):
                problems.append(f"inputs domain of {column.name!r} differs from snapshot_domains")
        if self.target in self.inputs.schema.names:
            problems.append(f"inputs must not read the target {self.target!r}")
        return problems

    def _domain_problems(self) -> list[str]:
        problems = []
        names = set(self.snapshot_schema.names)
        unknown = sorted((set(self.snapshot_domains) | set(self.snapshot_sources)) - names)
        if unknown:
            problems.append(f"snapshot_domains or snapshot_sources name columns not in the snapshot schema {unknown}")
        for name, domain in sorted(self.snapshot_domains.items()):
            if name not in names:
                continue
            kind = self.snapshot_schema.field(name).type
            numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
            if (domain.low is not None or domain.high is not None) and not numeric:
                problems.append(f"snapshot_domains[{name!r}] has bounds but the column is {kind}")
            if domain.low is not None and domain.high is not None and domain.low > domain.high:
                problems.append(f"snapshot_domains[{name!r}]: low {domain.low} > high {domain.high}")
            if domain.values is not None and not pa.types.is_string(kind):
                problems.append(f"snapshot_domains[{name!r}] lists values but the column is {kind}")
        tables = {table.name: table for table in self.source_tables.tables.values()}
        for name, source in sorted(self.snapshot_sources.items()):
            table, _, column = source.partition(".")
            if table not in tables or column not in tables[table].c:
                problems.append(f"snapshot_sources[{name!r}] = {source!r} is not a declared table.column")
        return problems


PACKAGE = "src.datasets"


def load(name: str) -> Adapter:
    """The adapter of src/datasets/<name>/, checked."""
    if not name.isidentifier():
        raise ValueError(f"dataset.adapter {name!r} is not a package name under src/datasets/")
    try:
        module = importlib.import_module(f"{PACKAGE}.{name}")
    except ModuleNotFoundError as error:
        if error.name in (f"{PACKAGE}.{name}",):
            raise ValueError(f"dataset.adapter {name!r}: no package src/datasets/{name}/") from None
        raise
    adapter = getattr(module, "ADAPTER", None)
    if not isinstance(adapter, Adapter):
        raise ValueError(f"src/datasets/{name}/ defines no ADAPTER = Adapter(...)")
    if adapter.name != name:
        raise ValueError(f"src/datasets/{name}/'s ADAPTER is named {adapter.name!r}; make the two agree")
    if adapter.inputs is not None and adapter.inputs is not getattr(module, "INPUTS", None):
        raise ValueError(f"src/datasets/{name}/'s ADAPTER.inputs is not its INPUTS: serving imports INPUTS")
    adapter.check()
    return adapter


def load_inputs(name: str) -> Inputs | None:
    """The INPUTS of src/datasets/<name>/ (None if it has none), without its ADAPTER or source side."""
    if not name.isidentifier():
        raise ValueError(f"dataset {name!r} is not a package name under src/datasets/")
    module = importlib.import_module(f"{PACKAGE}.{name}")
    inputs = getattr(module, "INPUTS", None)
    if inputs is not None and not isinstance(inputs, Inputs):
        raise ValueError(f"src/datasets/{name}/'s INPUTS is not an Inputs(...)")
    return inputs
