"""Compare two dvc.lock files path by path: every stage's deps, params and outs.

The locks come parsed by src/pipeline/lockfile.py, the project's one reader.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

KINDS = ("dep", "param", "out")


@dataclass(frozen=True)
class Entry:
    """One path (or params key) of one stage, as committed and as rebuilt."""

    stage: str
    kind: str  # dep | param | out
    path: str  # a file or directory; params as `params.yaml:key`
    committed: str | None  # hash (params: the value as JSON); None when absent
    rebuilt: str | None

    @property
    def identical(self) -> bool:
        return self.committed == self.rebuilt


def _hash(item: dict[str, Any]) -> str | None:
    # DVC 3 writes `hash: md5` and then the value under that name; 2.x only `md5`.
    return item.get(item.get("hash") or "md5") or item.get("md5")


def entries(lock: dict[str, Any]) -> dict[tuple[str, str, str], str]:
    """(stage, kind, path) -> hash, in the lock's own order."""
    found: dict[tuple[str, str, str], str] = {}
    for stage, body in (lock.get("stages") or {}).items():
        for item in body.get("deps") or []:
            found[(stage, "dep", item["path"])] = _hash(item)
        for params_file, values in (body.get("params") or {}).items():
            for key, value in (values or {}).items():
                found[(stage, "param", f"{params_file}:{key}")] = json.dumps(value, sort_keys=True)
        for item in body.get("outs") or []:
            found[(stage, "out", item["path"])] = _hash(item)
    return found


def compare(committed: dict[str, Any], rebuilt: dict[str, Any], stages: set[str] | None = None) -> list[Entry]:
    """Every entry of either lock (limited to `stages` if given), stage by stage."""
    old, new = entries(committed), entries(rebuilt)
    order = list(old) + [key for key in new if key not in old]
    stage_order = list(dict.fromkeys(key[0] for key in order))
    order.sort(key=lambda key: (stage_order.index(key[0]), KINDS.index(key[1])))
    return [
        Entry(stage, kind, path, old.get((stage, kind, path)), new.get((stage, kind, path)))
        for stage, kind, path in order
        if stages is None or stage in stages
    ]


def producers(lock: dict[str, Any]) -> dict[str, str]:
    """Output path -> the stage that writes it."""
    return {item["path"]: name for name, body in (lock.get("stages") or {}).items() for item in body.get("outs") or []}


def upstream(lock: dict[str, Any], targets: list[str]) -> set[str]:
    """`targets` and every stage whose outputs they depend on, transitively (what `dvc repro X` runs)."""
    stages = lock.get("stages") or {}
    unknown = [name for name in targets if name not in stages]
    if unknown:
        raise ValueError(f"no stage {unknown} in dvc.lock; its stages are {list(stages)}")
    writers = producers(lock)
    wanted, todo = set(), list(targets)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        for item in stages[name].get("deps") or []:
            todo += [
                writer
                for out, writer in writers.items()
                if item["path"] == out or item["path"].startswith(out.rstrip("/") + "/")
            ]
    return wanted


def short(value: str | None, kind: str, width: int = 12) -> str:
    """A table cell: hashes cut to `width`, small params values shown, large ones digested."""
    if value is None:
        return "(absent)"
    if kind == "param":
        return value if len(value) <= width else "#" + hashlib.md5(value.encode()).hexdigest()[: width - 1]
    return value[:width]
