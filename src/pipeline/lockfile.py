"""The one reader of dvc.lock: what the last pipeline run recorded.

Serving checks a model against it, tools compare two of them, tests list the
outputs it hashes. All of them parse it here, so a malformed lock gets one
message everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class LockError(RuntimeError):
    """dvc.lock is missing, unreadable, or does not record what is asked."""


def parse_lock(text: str, source: str = "dvc.lock") -> dict[str, Any]:
    """A dvc.lock's text as a mapping with a `stages` mapping, or a LockError."""
    try:
        lock = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise LockError(f"{source} is not valid YAML: {error}") from None
    if not isinstance(lock, dict) or not isinstance(lock.get("stages"), dict):
        raise LockError(f"{source} has no stages: not a dvc.lock")
    return lock


def read_dvc_lock(path: Path) -> dict[str, Any]:
    """The parsed dvc.lock at `path`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LockError(f"{path} not found: the outputs cannot be traced to a pipeline run") from None
    return parse_lock(text, str(path))


def outputs(lock: dict[str, Any]) -> list[str]:
    """Every output path the lock records, in stage order."""
    return [out["path"] for stage in lock["stages"].values() for out in (stage or {}).get("outs") or []]


def locked_md5(lock: dict[str, Any], relative_path: str, lock_path: Path | str = "dvc.lock") -> str:
    """The MD5 that the lock records for the stage output at `relative_path`."""
    for stage in lock["stages"].values():
        for out in (stage or {}).get("outs") or []:
            if out.get("path") == relative_path:
                # DVC 3 hashes raw bytes ("hash: md5"); DVC 2's entries (no `hash`
                # key) hashed text files with CRLF folded, which is another value.
                if out.get("hash") != "md5" or "md5" not in out:
                    raise LockError(
                        f"{lock_path} records {relative_path} without a DVC 3 md5 hash: run `dvc repro` with DVC 3"
                    )
                return out["md5"]
    raise LockError(f"{lock_path} records no stage output {relative_path}: run `dvc repro` and commit dvc.lock")


_ABSENT = object()


def recorded_params(lock: dict[str, Any], key: str, params_file: str = "params.yaml") -> list[tuple[str, Any]]:
    """(stage, value) for every stage whose entry records the params `key` ("evaluate.threshold").

    A stage lists a key either as itself or inside a whole section ("train").
    """
    found = []
    for stage_name, stage in lock["stages"].items():
        recorded = ((stage or {}).get("params") or {}).get(params_file) or {}
        if key in recorded:
            found.append((stage_name, recorded[key]))
            continue
        value: Any = recorded
        for part in key.split("."):
            value = value.get(part, _ABSENT) if isinstance(value, dict) else _ABSENT
        if value is not _ABSENT:
            found.append((stage_name, value))
    return found
