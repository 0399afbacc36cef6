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
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from src.pipeline import config
from src.pipeline.adapter import UNKNOWN
from src.pipeline.source.moments import as_of_timestamp, refuse_future

ModelName = Literal["hist_gradient_boosting", "logistic_regression", "random_forest", "mlp", "stacking"]
BaseModelName = Literal["hist_gradient_boosting", "logistic_regression", "random_forest", "mlp"]


class ParamsError(ValueError):
    """params.yaml does not match the schema; the message names every bad key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Dataset(BaseModel):
    # The adapter's own keys are checked by its params_model (src/pipeline/dataset.py, load_adapter).
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    adapter: str


class Gather(_Section):
    # ISO date or UTC timestamp; a bare date means the end of that day (UTC).
    as_of: str
    chunk_rows: int = Field(gt=0)
    # as_of as the source's timestamp text, parsed once here: gather binds it, tools read it.
    _moment: str = PrivateAttr()

    @field_validator("as_of", mode="before")
    @classmethod
    def _quoted(cls, value: object) -> object:
        if isinstance(value, dt.datetime):
            raise ValueError(
                f"quote the timestamp ({quoted_moment(value)!r}): YAML reads an unquoted timestamp "
                "as a datetime object, which DVC cannot record"
                + ("; it had no time zone, and as_of is in UTC (Z)" if value.tzinfo is None else "")
            )
        if isinstance(value, dt.date):
            raise ValueError(
                f"quote the date ('{value.isoformat()}'): YAML reads an unquoted date as a date "
                "object, which DVC cannot record"
            )
        return value

    @field_validator("as_of")
    @classmethod
    def _parse_as_of(cls, value: str) -> str:
        # Rows can still be recorded at or before a future moment, so the
        # same as_of would give another snapshot tomorrow.
        refuse_future(as_of_timestamp(value))  # raises ValueError with the accepted formats
        return value

    @model_validator(mode="after")
    def _keep_moment(self) -> Gather:
        self._moment = as_of_timestamp(self.as_of)
        return self

    @property
    def moment(self) -> str:
        """`as_of` as the source's timestamp text (UTC; a bare date is the end of that day)."""
        return self._moment


class Featurize(_Section):
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


class Mlp(_Section):
    # scikit-learn's MLPClassifier arguments (adam); its one random_state is the seed.
    hidden_layer_sizes: list[int] = Field(min_length=1)
    alpha: float = Field(ge=0)
    learning_rate_init: float = Field(gt=0)
    batch_size: int = Field(gt=0)
    max_iter: int = Field(gt=0)
    early_stopping: bool
    validation_fraction: float = Field(gt=0, lt=1)
    n_iter_no_change: int = Field(ge=1)

    @field_validator("hidden_layer_sizes")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(size < 1 for size in value):
            raise ValueError(f"every layer needs at least one unit (got {value})")
        return value


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


class FeatureSelection(_Section):
    # none: every feature goes to the estimator (the default). permutation: the
    # `keep` features whose shuffling costs the most ROC AUC, ranked on the
    # training rows only (src/pipeline/selection.py).
    method: Literal["none", "permutation"]
    # A count of features (an integer, at least 1), or a fraction of them in (0, 1], rounded up.
    keep: int | float
    # The share of the training rows the ranking is scored on; the ranker is fitted on the rest.
    holdout: float = Field(gt=0, lt=1)
    # Shuffles per feature.
    repeats: int = Field(ge=1)

    @field_validator("keep", mode="before")
    @classmethod
    def _keep(cls, value: object) -> object:
        wrong = "keep must be a count of features (an integer, at least 1) or a fraction of them in (0, 1]"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(wrong)
        if isinstance(value, int) and value < 1 or isinstance(value, float) and not 0 < value <= 1:
            raise ValueError(f"{wrong} (got {value!r})")
        return value

    def count(self, features: int) -> int:
        """How many of `features` features are kept; a count larger than `features` is refused."""
        if isinstance(self.keep, float):
            # Rounded first: 0.3 * 10 is 3.0000000000000004, which is 3 features, not 4.
            return max(1, math.ceil(round(self.keep * features, 9)))
        if self.keep > features:
            raise ParamsError(
                f"train.feature_selection.keep is {self.keep}, but there are only {features} "
                "features: lower it, or give a fraction in (0, 1]"
            )
        return self.keep


class Train(_Section):
    model: ModelName
    impute_strategy: Literal["mean", "median", "most_frequent"]
    # Folds of the validation estimate (metrics/validation.json), from the training features only.
    cv_folds: int = Field(ge=2)
    feature_selection: FeatureSelection
    hist_gradient_boosting: HistGradientBoosting
    logistic_regression: LogisticRegression
    random_forest: RandomForest
    mlp: Mlp
    stacking: Stacking


class Evaluate(_Section):
    threshold: float = Field(gt=0, lt=1)
    importance_rows: int = Field(gt=0)
    importance_repeats: int = Field(gt=0)


class Params(_Section):
    seed: int = Field(ge=0, lt=2**32)
    dataset: Dataset
    gather: Gather
    featurize: Featurize
    train: Train
    evaluate: Evaluate
    # Recorded by `make categories` from the training features; empty until then.
    categories: dict[str, list[str]]
    classes: list[StrictInt] | list[StrictStr]

    @field_validator("categories")
    @classmethod
    def _lists_sorted(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, values in value.items():
            if values != sorted(values) or len(values) != len(dict.fromkeys(values)):
                raise ValueError(
                    f"categories.{name} must be sorted and without duplicates (`make categories` writes it so)"
                )
            if UNKNOWN in values:
                raise ValueError(f"categories.{name} must not contain the reserved {UNKNOWN!r}")
        return value

    @field_validator("classes")
    @classmethod
    def _classes_sorted(cls, value: list) -> list:
        if value != sorted(value) or len(value) != len(set(value)):
            raise ValueError("classes must be sorted and without duplicates (`make categories` writes it so)")
        if len(value) == 1:
            raise ValueError(f"classes has one class {value}: a classifier needs at least two")
        return value


def quoted_moment(value: dt.datetime) -> str:
    """The text to quote for an unquoted YAML timestamp: the same moment in UTC, with its zone (Z).

    YAML gives a timestamp typed without a zone as a naive datetime; as_of is
    in UTC and refuses a timestamp without a zone, so the suggested fix says Z.
    """
    utc = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return utc.replace(tzinfo=None).isoformat() + "Z"


# How long a bad value may be when it is quoted back: never a whole section.
_QUOTE = 60


def _quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _QUOTE else text[: _QUOTE - 3] + "..."


def describe(error: ValidationError, prefix: str = "") -> str:
    """One line per problem: the key, what is wrong, and what to do.

    Problems that differ only in a list position share one line with a count:
    500 numbers where text belongs are one mistake, not 500 lines.
    """
    lines: list[str] = []
    groups: dict[tuple, int] = {}  # (key without list positions, error type) -> index in lines
    repeats: dict[int, int] = {}
    for item in error.errors():
        parts = ([prefix] if prefix else []) + list(item["loc"])
        group = (tuple(str(part) for part in parts if not isinstance(part, int)), item["type"])
        if group in groups:
            repeats[groups[group]] = repeats.get(groups[group], 0) + 1
            continue
        groups[group] = len(lines)
        # A key that is not a plain name (control characters, spaces) is quoted, so the line stays readable.
        key = (
            ".".join(str(part) if isinstance(part, int) or str(part).isidentifier() else repr(part) for part in parts)
            or "(top level)"
        )
        if item["type"] == "missing":
            lines.append(f"  {key}: missing; add it (the template's params.yaml shows every key)")
        elif item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key; remove it or fix its spelling")
        else:
            # Our validators' own words, without pydantic's "Value error, " prefix.
            message = str(item["ctx"]["error"]) if item["type"] == "value_error" else item["msg"]
            if isinstance(item.get("input"), (dict, list)) and item["type"] not in ("list_type", "dict_type"):
                lines.append(f"  {key}: {message}")
            else:
                lines.append(f"  {key}: {message} (got {_quote(item.get('input'))})")
    for index, count in repeats.items():
        lines[index] += f" (and {count} more like it)"
    return "\n".join(lines)


def validate(raw: object, source: str = "params.yaml") -> Params:
    """Check a parsed params mapping against the schema."""
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(f"{source} is invalid:\n{describe(error)}") from None


def update_params(path: Path, change: Callable[[Any], None]) -> bool:
    """Edit params.yaml in place through `change(document)`; True if it changed.

    ruamel.yaml's round trip keeps comments and order. The dumper is set up
    as DVC's own (`dvc exp run -S` rewrites this file with it), so the layout
    we write is the layout DVC writes back: a sweep or a recorded list never
    reflows the file. The result is validated before it replaces the file.
    """
    from ruamel.yaml import YAML

    from src.pipeline import files

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


class DuplicateKeyError(yaml.YAMLError):
    """A mapping in the file gives one key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping.

    PyYAML keeps the last of two equal keys without a word, so a key pasted
    twice would quietly win over the first; DVC's own YAML reader refuses such
    a file. Merge keys (`<<`) are left to PyYAML.
    """

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    line = first.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # an unhashable key: PyYAML's own error follows
                    continue
                if line != key_node.start_mark.line + 1:
                    raise DuplicateKeyError(
                        f"the key {key!r} appears twice in one section, on lines {line} and "
                        f"{key_node.start_mark.line + 1}: YAML would keep only the last, and "
                        "DVC refuses the file; keep one"
                    )
        return super().construct_mapping(node, deep=deep)


def load_params(path: Path = config.PARAMS_FILE) -> Params:
    try:
        raw = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a safe loader)
    except FileNotFoundError:
        raise ParamsError(f"{path} not found") from None
    except UnicodeDecodeError as error:
        raise ParamsError(
            f"{path} is not UTF-8 text: byte 0x{error.object[error.start]:02x} at position {error.start}"
        ) from None
    except RecursionError:  # PyYAML recurses per nesting level
        raise ParamsError(f"{path} nests too deeply to read") from None
    except DuplicateKeyError as error:
        raise ParamsError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    return validate(raw, str(path))
