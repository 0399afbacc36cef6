"""Why two versions of an output differ, in terms a data scientist can act on.

Each explainer takes the committed and the rebuilt bytes of one file and
returns a dict with a one-line `summary` and machine-readable `details`:

- Parquet: which columns differ, in how many rows, a few differing rows (aligned
  on the dataset's unique id), or that only the file's metadata differs;
- a pickled model: whether its predictions on the test set differ (and by how
  much), and which fitted attributes differ, or that only the bytes do;
- JSON (metrics, manifest, plots): the changed values, key by key.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from src.pipeline import artifact, config

EXAMPLES = 5  # differing rows / values shown per output
ATTRIBUTES = 20  # differing fitted attributes named per model
# Compared with ==; everything else by its pickled state.
_SCALARS = (bool, int, float, complex, str, bytes, type(None), np.generic, np.dtype, type)


def md5(data: bytes) -> str:
    """What dvc.lock records for a file (DVC 3: MD5 of the raw bytes)."""
    return hashlib.md5(data).hexdigest()


def plain(value: Any) -> Any:
    """A JSON-friendly copy of one cell."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return str(value)
    if isinstance(value, np.generic):
        return plain(value.item())
    return value


def explain_file(path: str, committed: bytes, rebuilt: bytes, **context: Any) -> dict[str, Any]:
    """Dispatch on the file's kind; never raises (an explanation must not hide the table)."""
    suffix = Path(path).suffix.lower()
    explainer: Callable[..., dict[str, Any]] = {
        ".parquet": explain_parquet,
        ".pkl": explain_model,
        ".pickle": explain_model,
        ".joblib": explain_model,
        ".json": explain_json,
    }.get(suffix, explain_bytes)
    try:
        return explainer(committed, rebuilt, **context)
    except Exception as error:  # a file we cannot read as its kind
        fallback = explain_bytes(committed, rebuilt)
        fallback["summary"] += f" (could not compare as {suffix or 'a file'}: {type(error).__name__}: {error})"
        return fallback


def explain_bytes(committed: bytes, rebuilt: bytes, **_: Any) -> dict[str, Any]:
    # Not strict: past the shorter file's end, its length is the first difference.
    first = next(
        (i for i, (a, b) in enumerate(zip(committed, rebuilt, strict=False)) if a != b),
        min(len(committed), len(rebuilt)),
    )
    return {
        "summary": f"bytes differ from offset {first} (committed {len(committed)} bytes, rebuilt {len(rebuilt)})",
        "details": {"first_difference": first, "committed_size": len(committed), "rebuilt_size": len(rebuilt)},
    }


# --- JSON --------------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": [1, 2]}} -> {"a.b[0]": 1, "a.b[1]": 2}."""
    if isinstance(value, dict):
        items = {}
        for key, inner in value.items():
            items.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return items or {prefix: {}}
    if isinstance(value, list):
        items = {}
        for index, inner in enumerate(value):
            items.update(flatten(inner, f"{prefix}[{index}]"))
        return items or {prefix: []}
    return {prefix: value}


def json_changes(committed: Any, rebuilt: Any) -> list[dict[str, Any]]:
    old, new = flatten(committed), flatten(rebuilt)
    changes = []
    for key in list(old) + [key for key in new if key not in old]:
        a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
        if a == b and type(a) is type(b):
            continue
        change = {"key": key, "committed": a, "rebuilt": b}
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            change["difference"] = b - a
        changes.append(change)
    return changes


def explain_json(committed: bytes, rebuilt: bytes, **_: Any) -> dict[str, Any]:
    changes = json_changes(json.loads(committed), json.loads(rebuilt))
    if not changes:
        return {
            "summary": "the same values; only the formatting (key order, spacing, number format) differs",
            "details": {"changes": []},
        }
    shown = "; ".join(f"{c['key']}: {c['committed']!r} -> {c['rebuilt']!r}" for c in changes[:EXAMPLES])
    more = f" (and {len(changes) - EXAMPLES} more)" if len(changes) > EXAMPLES else ""
    return {"summary": f"{len(changes)} value(s) changed: {shown}{more}", "details": {"changes": changes}}


# --- Parquet -----------------------------------------------------------------


def _read_parquet(data: bytes) -> tuple[pa.Table, pq.FileMetaData]:
    handle = pq.ParquetFile(pa.BufferReader(data))
    return handle.read(), handle.metadata


def _metadata_summary(meta: pq.FileMetaData) -> dict[str, Any]:
    return {
        "created_by": meta.created_by,
        "format_version": meta.format_version,
        "row_groups": [meta.row_group(i).num_rows for i in range(meta.num_row_groups)],
        "key_value_metadata": {
            k.decode(errors="replace"): v.decode(errors="replace")[:200] for k, v in (meta.metadata or {}).items()
        },
        "compression": sorted(
            {
                meta.row_group(i).column(j).compression
                for i in range(meta.num_row_groups)
                for j in range(meta.num_columns)
            }
        ),
    }


def _differing(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Positions where two aligned columns differ; missing equals missing."""
    try:
        equal = (a == b).fillna(False).to_numpy(dtype=bool)
    except (TypeError, ValueError):
        equal = (a.astype(str) == b.astype(str)).to_numpy(dtype=bool)
    both_missing = (a.isna() & b.isna()).to_numpy(dtype=bool)
    return ~(equal | both_missing)


def _shape_differences(old: pd.DataFrame, new: pd.DataFrame) -> dict[str, Any]:
    """Row counts, columns on one side only, and columns whose type changed."""
    return {
        "rows": [len(old), len(new)],
        "columns_only_committed": [c for c in old.columns if c not in new.columns],
        "columns_only_rebuilt": [c for c in new.columns if c not in old.columns],
        "dtype_changes": {
            c: [str(old[c].dtype), str(new[c].dtype)]
            for c in old.columns
            if c in new.columns and old[c].dtype != new[c].dtype
        },
    }


def _align_on_key(
    old: pd.DataFrame, new: pd.DataFrame, key: str, details: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows both frames have, indexed by `key` in old's order; records in `details` the rows one side lacks."""
    details["key"] = key
    only_old = old.loc[~old[key].isin(new[key]), key]
    only_new = new.loc[~new[key].isin(old[key]), key]
    details["rows_only_committed"] = {
        "count": int(len(only_old)),
        "examples": [plain(v) for v in only_old[:EXAMPLES]],
    }
    details["rows_only_rebuilt"] = {
        "count": int(len(only_new)),
        "examples": [plain(v) for v in only_new[:EXAMPLES]],
    }
    common = old.loc[old[key].isin(new[key]), key]
    details["same_rows_other_order"] = bool(
        len(only_old) == len(only_new) == 0
        and not old[key].reset_index(drop=True).equals(new[key].reset_index(drop=True))
    )
    return old.set_index(key).loc[common], new.set_index(key).loc[common]


def _column_differences(a: pd.DataFrame, b: pd.DataFrame, label: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per shared column of two paired frames: rows that differ (and the largest numeric gap); a few examples.

    Each example names its row by `label`: the key column, or "row" for a position.
    """
    columns: dict[str, Any] = {}
    examples: list[dict[str, Any]] = []
    for column in [c for c in a.columns if c in b.columns]:
        mask = _differing(a[column], b[column])
        if not mask.any():
            continue
        info: dict[str, Any] = {"rows": int(mask.sum())}
        if pd.api.types.is_numeric_dtype(a[column]) and pd.api.types.is_numeric_dtype(b[column]):
            delta = (b[column].astype("float64") - a[column].astype("float64")).abs().to_numpy()[mask]
            if np.isfinite(delta).any():
                info["max_abs_difference"] = float(np.nanmax(delta))
        columns[column] = info
        for position in np.flatnonzero(mask)[:EXAMPLES]:
            examples.append(
                {
                    label: plain(a.index[position]),
                    "column": column,
                    "committed": plain(a[column].iloc[position]),
                    "rebuilt": plain(b[column].iloc[position]),
                }
            )
    return columns, examples


def parquet_differences(old: pd.DataFrame, new: pd.DataFrame, key: str | None) -> dict[str, Any]:
    """Columns and rows that differ, aligned on `key` when both frames have it unique."""
    details = _shape_differences(old, new)
    aligned = key is not None and key in old and key in new and old[key].is_unique and new[key].is_unique
    if aligned:
        a, b = _align_on_key(old, new, key, details)
    elif len(old) == len(new):
        a, b = old.reset_index(drop=True), new.reset_index(drop=True)
    else:
        details["columns"] = {}
        return details  # no way to pair rows: the row counts say it all
    columns, examples = _column_differences(a, b, key if aligned else "row")
    details["columns"] = columns
    details["examples"] = examples[: EXAMPLES * 2]
    return details


def _metadata_only(old_meta: pq.FileMetaData, new_meta: pq.FileMetaData) -> dict[str, Any]:
    """The explanation when the tables are equal: which file metadata differs."""
    old_info, new_info = _metadata_summary(old_meta), _metadata_summary(new_meta)
    changed = {name: [old_info[name], new_info[name]] for name in old_info if old_info[name] != new_info[name]}
    what = ", ".join(f"{name} {a!r} -> {b!r}" for name, (a, b) in changed.items()) or "byte layout"
    return {
        "summary": f"same columns, rows and values in the same order; only the file metadata differs: {what}",
        "details": {"metadata_only": True, "metadata_changes": changed},
    }


def _differences_summary(details: dict[str, Any], key: str | None) -> str:
    """parquet_differences' findings in one line."""
    parts = []
    if details["columns_only_committed"] or details["columns_only_rebuilt"]:
        parts.append(f"columns removed {details['columns_only_committed']}, added {details['columns_only_rebuilt']}")
    if details["dtype_changes"]:
        parts.append(f"types changed {details['dtype_changes']}")
    if details["rows"][0] != details["rows"][1]:
        parts.append(f"{details['rows'][0]} rows committed, {details['rows'][1]} rebuilt")
    for side in ("rows_only_committed", "rows_only_rebuilt"):
        if details.get(side, {}).get("count"):
            parts.append(
                f"{details[side]['count']} {key} value(s) only {side.split('_')[-1]}, e.g. {details[side]['examples']}"
            )
    if details["columns"]:
        parts.append(
            "differing columns: "
            + ", ".join(
                f"{name} ({info['rows']} rows"
                + (f", max |diff| {info['max_abs_difference']:.3g})" if "max_abs_difference" in info else ")")
                for name, info in details["columns"].items()
            )
        )
    for example in details.get("examples", [])[:3]:
        where = f"{key}={example[key]}" if key in example else f"row {example.get('row')}"
        parts.append(f"{where} {example['column']}: {example['committed']!r} -> {example['rebuilt']!r}")
    if details.get("same_rows_other_order") and not details["columns"]:
        parts = [f"the same rows and values in another order (sort by the unique {key} before writing)"]
    return "; ".join(parts) or "values differ"


def _with_cause(summary: str, snapshot_as_of: str, code_changed: list[str] | None) -> str:
    """`summary` after the likely cause, when a snapshot's as_of is unchanged yet its content differs."""
    if code_changed:
        return (
            f"the snapshot as of {snapshot_as_of} (unchanged) reads differently, but the stage's code "
            f"{code_changed} also differs from what dvc.lock recorded: either the code or a rewritten "
            f"source history is the cause. {summary}"
        )
    # Code and as_of unchanged: a change in content can only come from the source.
    return (
        f"the source's history was rewritten: the snapshot as of {snapshot_as_of} (unchanged, with "
        f"unchanged code) now reads differently, so rows recorded at or before that time were "
        f"changed or deleted in the source (or {config.SOURCE_URL_ENV} points at another "
        f"database). {summary}"
    )


def explain_parquet(
    committed: bytes,
    rebuilt: bytes,
    key: str | None = None,
    snapshot_as_of: str | None = None,
    code_changed: list[str] | None = None,
    **_: Any,
) -> dict[str, Any]:
    old_table, old_meta = _read_parquet(committed)
    new_table, new_meta = _read_parquet(rebuilt)
    if old_table.schema.equals(new_table.schema, check_metadata=False) and old_table.equals(new_table):
        return _metadata_only(old_meta, new_meta)
    details = parquet_differences(old_table.to_pandas(), new_table.to_pandas(), key)
    details["metadata_only"] = False
    summary = _differences_summary(details, key)
    if snapshot_as_of is not None and not details.get("same_rows_other_order"):
        summary = _with_cause(summary, snapshot_as_of, code_changed)
    return {"summary": summary, "details": details}


# --- Models ------------------------------------------------------------------


def attribute_differences(
    a: Any, b: Any, path: str = "model", limit: int = ATTRIBUTES, found: list[str] | None = None, depth: int = 0
) -> list[str]:
    """Paths of differing fitted state, e.g. `model.steps[1][1]._bin_mapper.n_threads: 1 -> 2`."""
    found = [] if found is None else found
    if len(found) >= limit or depth > 40:
        return found
    if type(a) is not type(b):
        found.append(f"{path}: type {type(a).__name__} -> {type(b).__name__}")
    elif isinstance(a, np.ndarray):
        if a.shape != b.shape or a.dtype != b.dtype:
            found.append(f"{path}: array {a.dtype}{list(a.shape)} -> {b.dtype}{list(b.shape)}")
        elif a.dtype == object:
            attribute_differences(a.tolist(), b.tolist(), path, limit, found, depth + 1)
        elif a.tobytes() != b.tobytes():
            found.append(f"{path}: {_array_change(a, b)}")
    elif isinstance(a, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                found.append(f"{path}[{key!r}]: {'added' if key in b else 'removed'}")
            else:
                attribute_differences(a[key], b[key], f"{path}[{key!r}]", limit, found, depth + 1)
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            found.append(f"{path}: length {len(a)} -> {len(b)}")
        for index, (x, y) in enumerate(zip(a, b, strict=False)):  # a length change is reported above
            attribute_differences(x, y, f"{path}[{index}]", limit, found, depth + 1)
    elif isinstance(a, float) and math.isnan(a) and math.isnan(b):
        pass
    elif isinstance(a, _SCALARS):
        if a != b:
            found.append(f"{path}: {a!r} -> {b!r}"[:300])
    else:
        # Estimators, bin mappers, tree predictors and Cython trees all expose their
        # fitted state through __getstate__ (what pickle saves): compare that.
        state_a, state_b = a.__getstate__(), b.__getstate__()
        if isinstance(state_a, dict) and isinstance(state_b, dict):
            for name in sorted(set(state_a) | set(state_b), key=str):
                if name not in state_a or name not in state_b:
                    found.append(f"{path}.{name}: {'added' if name in state_b else 'removed'}")
                else:
                    attribute_differences(state_a[name], state_b[name], f"{path}.{name}", limit, found, depth + 1)
        elif state_a is None and state_b is None:
            if pickle.dumps(a) != pickle.dumps(b):
                found.append(f"{path}: {type(a).__name__} differs")
        else:
            attribute_differences(state_a, state_b, path, limit, found, depth + 1)
    return found


def _array_change(a: np.ndarray, b: np.ndarray) -> str:
    if a.dtype.names:  # structured (tree nodes): name the fields that differ
        fields = [name for name in a.dtype.names if a[name].tobytes() != b[name].tobytes()]
        return f"fields {fields} differ"
    differ = a != b
    if np.issubdtype(a.dtype, np.number) and not np.issubdtype(a.dtype, np.complexfloating):
        delta = np.abs(a.astype("float64") - b.astype("float64"))
        return f"{int(differ.sum())} of {a.size} values differ, max |diff| {np.nanmax(delta):.3g}"
    return f"{int(differ.sum())} of {a.size} values differ"


def compare_predictions(old_model: Any, new_model: Any, X: pd.DataFrame) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        method = "predict_proba" if hasattr(old_model, "predict_proba") else "predict"
        old = np.asarray(getattr(old_model, method)(X), dtype="float64")
        new = np.asarray(getattr(new_model, method)(X), dtype="float64")
    result: dict[str, Any] = {"rows": int(len(X)), "method": method, "identical": bool(old.tobytes() == new.tobytes())}
    if not result["identical"] and old.shape == new.shape:
        delta = np.abs(old - new)
        result["rows_differing"] = int((delta.reshape(len(X), -1) > 0).any(axis=1).sum())
        result["max_abs_difference"] = float(delta.max())
        result["mean_abs_difference"] = float(delta.mean())
        if method == "predict_proba":
            result["predicted_class_changes"] = int((old.argmax(axis=1) != new.argmax(axis=1)).sum())
    return result


def explain_model(
    committed: bytes,
    rebuilt: bytes,
    test_features: pd.DataFrame | None = None,
    features: list[str] | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Unpickle both (the committed bytes come from our own DVC cache, checked by hash) and compare.

    Through the model allowlist (artifact.loads), as every model load is: a
    cache entry is only as trustworthy as the dvc.lock that names it.
    """
    try:
        old_model = artifact.loads(committed, "the committed model")
        new_model = artifact.loads(rebuilt, "the rebuilt model")
    except artifact.ArtifactError as error:
        return {"summary": f"not compared: {error}", "details": {"refused": str(error)}}
    attributes = attribute_differences(old_model, new_model)
    details: dict[str, Any] = {"attribute_differences": attributes}
    parts = []
    if test_features is not None and features:
        predictions = compare_predictions(old_model, new_model, test_features[features])
        details["predictions"] = predictions
        if predictions["identical"]:
            parts.append(f"predictions on the {predictions['rows']} test rows are identical")
        else:
            parts.append(
                f"predictions on the {predictions['rows']} test rows differ: {predictions.get('rows_differing')} rows, "
                f"max |diff| {predictions.get('max_abs_difference', float('nan')):.3g}"
                + (
                    f", {predictions['predicted_class_changes']} predicted classes change"
                    if "predicted_class_changes" in predictions
                    else ""
                )
            )
    else:
        parts.append("predictions not compared (no test features or feature list)")
    if attributes:
        more = "" if len(attributes) < ATTRIBUTES else f" (first {ATTRIBUTES})"
        parts.append(f"fitted attributes that differ{more}: " + "; ".join(attributes[:EXAMPLES]))
    else:
        parts.append(
            "every fitted attribute is identical: only the pickle's bytes differ "
            "(e.g. a loaded-and-re-saved model, or another pickle protocol)"
        )
    return {"summary": "; ".join(parts), "details": details}
