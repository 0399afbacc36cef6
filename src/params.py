"""The schema of params.yaml, and the one function that loads it.

Every stage calls `load_params()` before it does any work, so a missing key, an
unknown key or a wrong type stops the pipeline with a message that names the
key and the expected type, instead of a traceback deep inside a stage.
pydantic's strict mode refuses silent coercions ("1" for 1, 1.5 for an int):
DVC compares params by value, so a type that drifts would rewrite dvc.lock.
"""
from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any, Callable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from src import config

MODEL_NAMES = ("hist_gradient_boosting", "logistic_regression", "random_forest", "stacking")
ModelName = Literal["hist_gradient_boosting", "logistic_regression", "random_forest", "stacking"]
BaseModelName = Literal["hist_gradient_boosting", "logistic_regression", "random_forest"]


class ParamsError(ValueError):
    """params.yaml does not match the schema; the message names every bad key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Gather(_Section):
    # ISO date or UTC timestamp; a bare date means the end of that day (UTC).
    as_of: str
    chunk_rows: int = Field(gt=0)

    @field_validator("as_of")
    @classmethod
    def _parse_as_of(cls, value: str) -> str:
        as_of_timestamp(value)  # raises ValueError with the accepted formats
        return value


class Featurize(_Section):
    target_delay_minutes: int = Field(ge=0)
    test_percent: int = Field(gt=0, lt=100)


class HistGradientBoosting(_Section):
    learning_rate: float = Field(gt=0)
    max_iter: int = Field(gt=0)
    max_leaf_nodes: int = Field(ge=2)
    min_samples_leaf: int = Field(ge=1)
    l2_regularization: float = Field(ge=0)


class LogisticRegression(_Section):
    C: float = Field(gt=0)
    max_iter: int = Field(gt=0)


class RandomForest(_Section):
    n_estimators: int = Field(gt=0)
    max_depth: int = Field(gt=0)
    min_samples_leaf: int = Field(ge=1)


class Stacking(_Section):
    estimators: list[BaseModelName] = Field(min_length=2)
    final_estimator: Literal["logistic_regression"]
    cv_folds: int = Field(ge=2)

    @field_validator("estimators")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("base estimators must be distinct")
        return value


class Train(_Section):
    model: ModelName
    impute_strategy: Literal["mean", "median", "most_frequent"]
    # Thread count of BLAS and OpenMP inside train and evaluate. It changes bytes:
    # HistGradientBoosting pickles the thread count it used, and a random forest's
    # n_jobs is stored in the model and reorders the sums in predict_proba.
    threads: int = Field(ge=1)
    hist_gradient_boosting: HistGradientBoosting
    logistic_regression: LogisticRegression
    random_forest: RandomForest
    stacking: Stacking


class Evaluate(_Section):
    threshold: float = Field(gt=0, lt=1)
    importance_rows: int = Field(gt=0)
    importance_repeats: int = Field(gt=0)


class Params(_Section):
    seed: int = Field(ge=0, lt=2**32)
    gather: Gather
    featurize: Featurize
    categories: dict[str, list[str]]
    train: Train
    evaluate: Evaluate

    @model_validator(mode="after")
    def _categories_recorded(self) -> "Params":
        from src import dataset

        expected = list(dataset.CATEGORICAL)
        if list(self.categories) != expected:
            raise ValueError(
                f"categories must have exactly the keys {expected} in that order, "
                f"got {list(self.categories)}; run `make categories`"
            )
        for name, values in self.categories.items():
            if values != sorted(values) or len(values) != len(dict.fromkeys(values)):
                raise ValueError(f"categories.{name} must be sorted and without duplicates")
            if dataset.UNKNOWN in values:
                raise ValueError(f"categories.{name} must not contain the reserved {dataset.UNKNOWN!r}")
        return self


def as_of_timestamp(value: str) -> str:
    """`as_of` as the source's timestamp text ('YYYY-MM-DD HH:MM:SS', UTC).

    A bare date is the end of that day, so `as_of: 2013-06-30` includes everything
    recorded on June 30th.
    """
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            moment = dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.timezone.utc)
        else:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise ValueError("a timestamp needs a time zone, e.g. 2013-06-30T12:00:00Z")
    except ValueError as error:
        raise ValueError(
            f"as_of {value!r} is neither a date (YYYY-MM-DD) nor a UTC timestamp "
            f"(YYYY-MM-DDTHH:MM:SSZ): {error}"
        ) from None
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "missing":
            lines.append(f"  {key}: missing")
        elif item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def validate(raw: object, source: str = "params.yaml") -> Params:
    """Check a parsed params mapping against the schema."""
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(f"{source} is invalid:\n{_describe(error)}") from None


def update_params(path: Path, change: Callable[[Any], None]) -> bool:
    """Edit params.yaml in place through `change(document)`; True if it changed.

    ruamel.yaml's round trip keeps comments and order. The dumper is set up
    as DVC's own (`dvc exp run -S` rewrites this file with it), so the layout
    we write is the layout DVC writes back: a sweep or a recorded list never
    reflows the file. The result is validated before it replaces the file.
    """
    from ruamel.yaml import YAML

    from src import files

    yaml_rt = YAML()
    yaml_rt.default_flow_style = False  # as dvc.utils.serialize._yaml
    original = Path(path).read_text(encoding="utf-8")
    document = yaml_rt.load(original)
    change(document)
    buffer = io.StringIO()
    yaml_rt.dump(document, buffer)
    validate(yaml.safe_load(buffer.getvalue()), str(path))  # never write a file the stages would refuse
    if buffer.getvalue() == original:
        return False
    with files.atomic_open(path) as handle:
        handle.write(buffer.getvalue())
    return True


def load_params(path: Path = config.PARAMS_FILE) -> Params:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path} not found") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    return validate(raw, str(path))
