"""`make lock`'s report: what a re-pin changed, in a few lines instead of uv's thousands.

    python -m src.tools.lock_summary OLD_LOCK requirements.lock [requirements-serving.lock]

prints, for example,

    requirements.lock: 146 packages (+1 added, -0 removed, ~2 changed versions)
      + tabulate 0.9.0
      ~ certifi 2025.1.31 -> 2025.4.26
    requirements-serving.lock: 41 packages

This module is also the one reader of pip/uv requirement locks (`name==version`
pins with `--hash` options): `make doctor` compares the environment with
the pins it reads.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

# uv writes its command into the lock's header; the target Python is an option of it.
_PYTHON_VERSION = re.compile(r"--python-version[ =](?P<version>[0-9][0-9.]*)")


@dataclass
class Locked:
    python: str | None  # the version the lock was compiled for (uv's --python-version), if stated
    packages: dict[str, str]  # canonical name -> pinned version


def _requirement_lines(text: str) -> Iterator[str]:
    """A lock's requirement lines, continuations joined, without options (`--hash=...`) or comments."""
    logical = ""
    for line in text.splitlines():
        logical += line.removesuffix("\\")
        if line.endswith("\\"):
            continue
        requirement = logical.split(" #", 1)[0].split(" --", 1)[0].strip()
        logical = ""
        if requirement and not requirement.startswith(("#", "-")):
            yield requirement


def read_pins(text: str) -> Locked:
    """Pinned versions of a pip/uv lock (`name==version`); pins for another platform or Python are skipped."""
    packages: dict[str, str] = {}
    python = None
    for line in text.splitlines():
        match = _PYTHON_VERSION.search(line) if line.startswith("#") else None
        if match and python is None:
            python = match["version"]
    for line in _requirement_lines(text):
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue  # not a pin that can be compared; pip itself would refuse the lock
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        packages[canonicalize_name(requirement.name)] = specifiers[0].version
    return Locked(python=python, packages=packages)


def changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """One line per added (+), removed (-) and re-pinned (~) package, by name."""
    lines = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before is None:
            lines.append(f"+ {name} {after}")
        elif after is None:
            lines.append(f"- {name} {before}")
        elif before != after:
            lines.append(f"~ {name} {before} -> {after}")
    return lines


def _packages(count: int) -> str:
    return f"{count} package" + ("" if count == 1 else "s")


def summary(name: str, new_text: str, old_text: str | None = None) -> list[str]:
    """`name: N packages`, and against the old lock's text the counts and lines of what changed."""
    new = read_pins(new_text).packages
    if old_text is None:
        return [f"{name}: {_packages(len(new))}"]
    lines = changes(read_pins(old_text).packages, new)
    counts = {sign: sum(line.startswith(sign) for line in lines) for sign in "+-~"}
    head = (
        f"{name}: {_packages(len(new))} (+{counts['+']} added, -{counts['-']} removed, ~{counts['~']} changed versions)"
    )
    return [head, *(f"  {line}" for line in lines)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.tools.lock_summary", description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path, help="a copy of the lock before the re-pin (may be missing: a first lock)")
    parser.add_argument("lock", type=Path, help="the re-pinned lock")
    parser.add_argument("others", type=Path, nargs="*", help="locks derived from it: only their package counts")
    args = parser.parse_args(argv)
    old = args.old.read_text(encoding="utf-8") if args.old.is_file() else ""
    lines = summary(args.lock.name, args.lock.read_text(encoding="utf-8"), old)
    for other in args.others:
        lines += summary(other.name, other.read_text(encoding="utf-8"))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
