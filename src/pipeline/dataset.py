"""The data set that params.yaml's `dataset:` section names: its adapter, its own params, and what was recorded for it.

Apart from the params schema (params.py), which serving imports: loading an
adapter imports its package, and with it whatever the package declares its
source with.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ValidationError

from src.pipeline import adapter as adapter_module
from src.pipeline.adapter import REGRESSION, Adapter
from src.pipeline.params import Params, ParamsError, describe


def load_adapter(params: Params) -> tuple[Adapter, BaseModel]:
    """The adapter that `dataset.adapter` names, and its own params section, validated."""
    try:
        adapter = adapter_module.load(params.dataset.adapter)
    except ValueError as error:
        raise ParamsError(f"params.yaml is invalid:\n  dataset.adapter: {error}") from None
    try:
        return adapter, adapter.parse_params(params.dataset.model_extra or {})
    except ValidationError as error:
        raise ParamsError(f"params.yaml is invalid:\n{describe(error, prefix='dataset')}") from None


def check_recorded(params: Params, adapter: Adapter) -> None:
    """Refuse to train or evaluate until the category lists and classes fit the adapter."""
    fix = "run `make categories` (it builds the training features first), review and commit params.yaml"
    expected = list(adapter.categorical)
    if list(params.categories) != expected:
        raise ParamsError(
            f"categories: recorded for {list(params.categories)}, but the adapter's categorical "
            f"features are {expected}; {fix}"
        )
    empty = [name for name, values in params.categories.items() if not values]
    if empty:
        raise ParamsError(f"categories: no values recorded for {empty}; {fix}")
    if adapter.task == REGRESSION:
        if params.classes:
            raise ParamsError(
                f"classes: {params.classes} recorded, but the target {adapter.target!r} is "
                f"{adapter.target_type}, a regression, which has no classes: set `classes: []` "
                "(`make categories` records none for a regression), or declare an integer or "
                "string target_type in the adapter for a classification"
            )
        if params.train.feature_selection.method != "none":
            raise ParamsError(
                f"train.feature_selection.method is {params.train.feature_selection.method!r}, "
                f"but feature selection ranks features for a classification only, and the target "
                f"{adapter.target!r} is a regression: set it to none"
            )
        return
    if not params.classes:
        raise ParamsError(f"classes: no classes recorded for the target {adapter.target!r}; {fix}")
    textual = isinstance(params.classes[0], str)
    if textual != pa.types.is_string(adapter.target_type):
        raise ParamsError(
            f"classes: {params.classes} are {'text' if textual else 'integers'}, but the target "
            f"{adapter.target!r} is {adapter.target_type}; {fix}"
        )
    if params.train.feature_selection.method != "none":
        params.train.feature_selection.count(len(adapter.features))  # keep no larger than the features


def check_target_values(target: pd.Series, where: str) -> None:
    """A regression's target must be a finite number on every row: a gap or an infinity has no error to measure."""
    values = pd.to_numeric(target, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    missing, infinite = int(np.isnan(values).sum()), int(np.isinf(values).sum())
    if missing or infinite:
        raise ValueError(
            f"the {where} target {target.name!r} has "
            + ", ".join(
                part
                for part in (
                    f"{missing:,} missing (NaN) values" if missing else "",
                    f"{infinite:,} infinite values" if infinite else "",
                )
                if part
            )
            + f" of {len(values):,} rows: a regression needs a finite target on every row; exclude "
            "those rows in the adapter's derive_features"
        )


def check_classes(target: pd.Series, classes: list, task: str | None = None) -> None:
    """The training labels must be exactly the recorded classes: no surprise, none absent.

    A regression (`task`) records no classes, and its every target value must be finite.
    """
    if task == REGRESSION:
        if classes:
            raise ParamsError(
                f"classes: {classes} recorded for a regression target {target.name!r}, which has "
                "no classes: set `classes: []` (`make categories` records none for a regression)"
            )
        check_target_values(target, "training")
        return
    seen = set(target.dropna().unique().tolist())
    unexpected, absent = sorted(seen - set(classes), key=str), sorted(set(classes) - seen, key=str)
    if unexpected or absent:
        raise ParamsError(
            f"classes: the training target does not match params.yaml's classes {classes}: "
            + "; ".join(
                part
                for part in (
                    f"labels not recorded {unexpected}" if unexpected else "",
                    f"recorded classes with no training row {absent}" if absent else "",
                )
                if part
            )
            + "; run `make categories`, review and commit params.yaml"
        )


def check_categories_seen(frame: pd.DataFrame, categories: dict[str, list[str]]) -> None:
    """Refuse a recorded list that none of the training values is on: the whole feature would be unknown.

    A list that misses some values is allowed (those rows go to the unknown
    bucket, and train warns with the counts); one that misses every value is a
    list recorded for other data.
    """
    unmatched = {
        name: sorted(map(str, frame[name].dropna().unique()))[:3]
        for name, values in categories.items()
        if frame[name].notna().any() and not frame[name].isin(values).any()
    }
    if unmatched:
        raise ParamsError(
            "categories: no training value is on the recorded list of "
            + "; ".join(f"{name} (the data has {examples}...)" for name, examples in unmatched.items())
            + ": every row would be unknown; run `make categories`, review and commit params.yaml"
        )
