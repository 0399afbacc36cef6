"""`make drop-example`: remove the worked example from a fork, once its own adapter is in use.

    python -m src.tools.drop_example

Refuses while params.yaml's `dataset.adapter` is still the example (run `make
new-adapter NAME=..` first) or while code outside the example imports it. Then:
- drops requirements.in's lines marked `[example]` (the example's own
  packages: the one place that names them) and re-locks with the very commands
  the two lock files record in their headers (`make lock`'s). uv keeps every pin
  already in a lock, so nothing else moves: the tool checks that and restores all
  three files otherwise. It tries uv's cache first (offline), then the index;
- clears `categories:` and `classes:` if they were recorded for another adapter
  (a key the active adapter does not declare): they are then the example's;
- removes dvc.lock and the outputs git stores (manifest, metrics) if dvc.lock
  records the example's run. They describe a data set that is gone, and the next
  `dvc repro` writes the fork's own, which the fork commits; a fork that already
  ran its pipeline keeps its outputs;
- `git rm`s the example's package (the folder of src/datasets/ that holds an EXAMPLE
  marker file: the one place that says which adapter is the example), its demo
  builder in src/demos/, tests/example/
  and tests/port/ (git refuses files with
  uncommitted changes) and stages every edit, so `git diff --cached` shows the
  whole removal, to review and commit.
Run it again and it says there is nothing left to drop.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from src.pipeline import config, lockfile
from src.pipeline.params import ParamsError, update_params
from src.tools.git import GitError, git
from src.tools.lock_summary import read_pins

if TYPE_CHECKING:
    from src.pipeline.adapter import Adapter

# The example adapter's package holds a file of this name; once dropped, none does.
EXAMPLE_MARKER = "EXAMPLE"
DATASETS = "src/datasets"
# The demo builders, one module per adapter that has one (not a stage dependency).
DEMOS = "src/demos"
# The example's tests, and the template's own fork test (tests/port/: it turns a
# clone of the template into a fork; inside a fork it has nothing to test).
EXAMPLE_TESTS = ("tests/example", "tests/port")
# requirements.in marks each line that only the example needs with this, in the line's comment.
EXAMPLE_MARK = "[example]"
REQUIREMENTS_IN = "requirements.in"
# The locks `make lock` writes, in its order: the serving lock is resolved against the full one.
LOCKS = ("requirements.lock", "requirements-serving.lock")
# The pipeline's outputs that git stores (cache: false in dvc.yaml), besides dvc.lock.
GIT_TRACKED_OUTPUTS = (config.MANIFEST, config.VALIDATION_METRICS, config.METRICS, config.FEATURIZE_SUMMARY)


class DropError(RuntimeError):
    """drop-example refuses, or a step failed with nothing left half-done."""


def example_name(root: Path = config.ROOT) -> str | None:
    """The example adapter's package name (params.yaml's dataset.adapter for it), or None once it is gone."""
    marked = sorted(marker.parent.name for marker in (root / DATASETS).glob(f"*/{EXAMPLE_MARKER}"))
    if len(marked) > 1:
        raise DropError(
            f"more than one adapter is marked as the example ({', '.join(marked)}): "
            f"keep {EXAMPLE_MARKER} in the template's example only"
        )
    return marked[0] if marked else None


def example_paths(root: Path = config.ROOT) -> tuple[str, ...]:
    """The example's adapter and its demo builder (while they are there), and its tests."""
    name = example_name(root)
    return (*([f"{DATASETS}/{name}", f"{DEMOS}/{name}.py"] if name else []), *EXAMPLE_TESTS)


def example_requirements(text: str) -> list[str]:
    """requirements.in's requirement lines whose comment starts with the example's mark."""
    marked = []
    for line in text.splitlines():
        requirement, _, comment = line.partition("#")
        if requirement.strip() and comment.strip().startswith(EXAMPLE_MARK):
            marked.append(line)
    return marked


def without_example_requirements(text: str) -> str:
    marked = set(example_requirements(text))
    return "".join(line for line in text.splitlines(keepends=True) if line.rstrip("\n") not in marked)


def recorded_command(lock_text: str, lock_name: str) -> list[str]:
    """The `uv pip compile ...` a lock's header records (uv writes it as the header's second line)."""
    lines = lock_text.splitlines()
    command = lines[1].removeprefix("#").strip() if len(lines) > 1 else ""
    if not command.startswith("uv pip compile "):
        raise DropError(f"{lock_name}'s header records no `uv pip compile` command: re-lock it with `make lock`")
    return shlex.split(command)


def _uv() -> str:
    beside = Path(sys.executable).parent / "uv"  # the venv's, pinned in the lock
    found = str(beside) if beside.is_file() else shutil.which("uv")
    if not found:
        raise DropError("no uv next to this Python or on PATH: run `make setup` first")
    return found


def relock(root: Path) -> tuple[list[str], str]:
    """Re-run each lock's recorded command; (packages gone from the full lock, where uv resolved from).

    Every pin that stays must keep its version, and nothing may be added;
    otherwise the locks are put back as they were and DropError says what moved.
    """
    before = {name: (root / name).read_text(encoding="utf-8") for name in LOCKS}
    offline = {**os.environ, "UV_OFFLINE": "1"}
    online = {key: value for key, value in os.environ.items() if key != "UV_OFFLINE"}
    failed = _compile(root, before, offline)
    where = "uv's cache (offline)"
    if failed:
        failed, where = _compile(root, before, online), "the package index"
    if failed:
        _restore(root, before)
        raise DropError(
            f"re-locking failed from uv's cache and from the package index ({failed}); "
            f"requirements.in and the locks are as they were"
        )
    for name in LOCKS:
        old, new = read_pins(before[name]).packages, read_pins((root / name).read_text(encoding="utf-8")).packages
        moved = sorted(
            f"{package} {old.get(package, '-')} -> {new.get(package, '-')}"
            for package in new
            if old.get(package) != new[package]
        )
        if moved:
            _restore(root, before)
            raise DropError(
                f"re-locking {name} changed other pins ({', '.join(moved)}); the locks are as they were: "
                f"re-lock by hand with `make lock` and review the diff"
            )
    gone = sorted(set(read_pins(before[LOCKS[0]]).packages) - set(read_pins((root / LOCKS[0]).read_text()).packages))
    return gone, where


def _compile(root: Path, before: dict[str, str], env: dict[str, str]) -> str | None:
    """Each lock's recorded command, in order; uv's last error line if one fails."""
    for name in LOCKS:
        command = recorded_command(before[name], name)
        result = subprocess.run([_uv(), *command[1:]], cwd=root, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            return (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
    return None


def _restore(root: Path, texts: dict[str, str]) -> None:
    for name, text in texts.items():
        (root / name).write_text(text, encoding="utf-8")


def clear_foreign_lists(params_path: Path, categorical: tuple[str, ...]) -> bool:
    """Empty `categories:` and `classes:` if any recorded key is not one of `categorical`; True if cleared."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    def change(document) -> None:
        if set(document.get("categories") or {}) - set(categorical):
            document["categories"] = CommentedMap()
            document["classes"] = CommentedSeq()

    return update_params(params_path, change)


def example_outputs(root: Path, example: str) -> list[str]:
    """dvc.lock and the git-stored outputs, if dvc.lock records a run of `example`; else none."""
    lock_path = root / "dvc.lock"
    if not lock_path.is_file():
        return []
    adapters = {value for _, value in lockfile.recorded_params(lockfile.read_dvc_lock(lock_path), "dataset.adapter")}
    if example not in adapters:
        return []
    outputs = ["dvc.lock", *(str(path.relative_to(config.ROOT)) for path in GIT_TRACKED_OUTPUTS)]
    return [path for path in outputs if git(["ls-files", "--", path], root)]


def _importers(root: Path, example: str, paths: tuple[str, ...]) -> list[str]:
    """Tracked Python files outside the example (`paths`) that import it."""
    pattern = rf"src\.(datasets|demos)\.{example}\b|from src\.(datasets|demos) import {example}\b"
    result = subprocess.run(
        ["git", "grep", "-l", "-E", pattern, "--", "*.py", *(f":!{path}" for path in paths)],
        cwd=root,
        capture_output=True,
        text=True,
    )
    return result.stdout.split()


def _check_droppable(
    root: Path, params_path: Path, example: str | None, paths: tuple[str, ...], present: list[str]
) -> Adapter:
    """Every refusal, before anything changes; the fork's adapter (loaded and checked) when none applies."""
    raw = yaml.safe_load(params_path.read_text(encoding="utf-8")) or {}
    active = (raw.get("dataset") or {}).get("adapter")
    if not isinstance(active, str):
        raise DropError("params.yaml names no dataset.adapter: run `make new-adapter NAME=<your data set>` first")
    if active == example:
        raise DropError(
            f"params.yaml's dataset.adapter is still the example ({example!r}): run "
            f"`make new-adapter NAME=<your data set>` first, then drop-example"
        )
    importers = _importers(root, example, paths) if example else []
    if importers:
        raise DropError(f"these files import the example, so they would break without it: {', '.join(importers)}")
    if present:  # git's own refusal (uncommitted changes in the example), before anything changes
        git(["rm", "-r", "-q", "--dry-run", "--", *present], root)
    from src.pipeline.adapter import load

    return load(active)  # the fork's adapter, checked, before anything changes


def _drop_requirements(root: Path, requirements_path: Path, requirements: str) -> list[str]:
    """requirements.in without its example lines, and the locks re-locked; requirements.in put back if that fails."""
    marked = example_requirements(requirements)
    if not marked:
        return []
    requirements_path.write_text(without_example_requirements(requirements), encoding="utf-8")
    try:
        gone, where = relock(root)
    except BaseException:
        requirements_path.write_text(requirements, encoding="utf-8")
        raise
    return [
        f"requirements.in: dropped {', '.join(line.split()[0] for line in marked)}; re-locked from "
        f"{where}: {', '.join(gone) or 'no package'} left {LOCKS[0]}, every other pin unchanged"
    ]


def _remove_example_files(root: Path, present: list[str]) -> list[str]:
    """`git rm` the example's tracked paths, then their folders if only bytecode is left in them."""
    git(["rm", "-r", "-q", "--", *present], root)
    done = []
    for path in present:  # what git leaves: bytecode only (other untracked files stay, named)
        leftovers = [item for item in (root / path).rglob("*") if item.is_file()] if (root / path).exists() else []
        if all("__pycache__" in item.parts for item in leftovers):
            shutil.rmtree(root / path, ignore_errors=True)
        else:
            done.append(f"kept untracked files in {path}: {', '.join(str(i.relative_to(root)) for i in leftovers)}")
    done.append(f"git rm: {', '.join(present)}")
    return done


def drop(root: Path = config.ROOT) -> list[str]:
    """Remove the example from the project at `root`; the messages to show, one per step."""
    params_path = root / config.PARAMS_FILE.relative_to(config.ROOT)
    requirements_path = root / REQUIREMENTS_IN
    requirements = requirements_path.read_text(encoding="utf-8")
    example, paths = example_name(root), example_paths(root)
    present = [path for path in paths if git(["ls-files", "--", path], root)]
    if not present and not example_requirements(requirements):
        return [
            f"drop-example: nothing to drop: the example adapter, {', '.join(EXAMPLE_TESTS)} and "
            f"requirements.in's {EXAMPLE_MARK} lines are gone already"
        ]
    adapter = _check_droppable(root, params_path, example, paths, present)
    done = _drop_requirements(root, requirements_path, requirements)
    if clear_foreign_lists(params_path, adapter.categorical):
        done.append(
            "params.yaml: cleared categories and classes recorded for the example (make categories records "
            f"{adapter.name}'s)"
        )
    outputs = example_outputs(root, example) if example else []
    if outputs:
        git(["rm", "-q", "--", *outputs], root)
        done.append(f"removed the example's recorded run: {', '.join(outputs)} (`dvc repro` writes {adapter.name}'s)")
    if present:
        done.extend(_remove_example_files(root, present))
    git(["add", "--", REQUIREMENTS_IN, *LOCKS, str(params_path.relative_to(root))], root)
    done.append(
        "drop-example: staged; review `git diff --cached --stat`, then `make repro` (it reinstalls .venv "
        "from the new lock), `make test`, and commit. Rename the remote's folder in .dvc/config after "
        "your project."
    )
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.tools.drop_example", description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    for line in drop():
        print(line)


if __name__ == "__main__":
    try:
        main()
    except (DropError, ParamsError, GitError, ValueError, lockfile.LockError) as error:
        sys.exit(f"drop-example: error: {error}")
