"""Bring a template's new params keys into a fork's params.yaml, key by key.

A fork owns its params.yaml (its dataset section, its recorded lists, its tuned
values), so `copier update` never merges the template's text into it
(`_skip_if_exists` in copier.yml): git's three-way text merge puts a fork's
changed value and a template's key added on the next line into one conflict.
Instead copier runs this after every update (`_migrations` in copier.yml) with
the new template's params.yaml: every key that the template has and the fork
lacks is added, with the template's value and the comment lines above it,
before the key that follows it in the template (or at the end of its section).
Nothing the fork has is changed: its values, comments and layout stay byte for
byte, and every param stays written in params.yaml, because DVC records in
dvc.lock only the params present there (docs/updating.md).

Not merged: the fork's own sections (`dataset`, the adapter's; `categories`
and `classes`, recorded from the fork's data). A key that the template renames
or removes needs a versioned migration of its own (docs/updating.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from src.pipeline import config, files
from src.pipeline.params import ParamsError, validate

# Top-level sections that are the fork's alone: the template's example values never enter them.
FORK_OWNED = ("dataset", "categories", "classes")


def _start(lines: list[str], row: int) -> int:
    """The first line of a key's block: its row, less the comment lines right above it."""
    while row > 0 and lines[row - 1].strip().startswith("#"):
        row -= 1
    return row


def _end(lines: list[str], row: int, column: int) -> int:
    """One past the last line of the value of the key at (row, column), trailing comments and blanks left out.

    A block list may sit at its key's own indentation (`- item`), as DVC writes it.
    """
    last = row
    for number in range(row + 1, len(lines)):
        text = lines[number]
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(text) - len(text.lstrip())
        if indent > column or (indent == column and (stripped == "-" or stripped.startswith("- "))):
            last = number
            continue
        break
    return last + 1


def _first_missing(
    fork: CommentedMap, template: CommentedMap, skip: tuple[str, ...] = (), prefix: str = ""
) -> tuple[str, CommentedMap, CommentedMap, object] | None:
    """The first template key (depth first, in the template's order) that the fork lacks."""
    for key, value in template.items():
        if key in skip:
            continue
        if key not in fork:
            return prefix + str(key), fork, template, key
        if isinstance(value, CommentedMap) and isinstance(fork[key], CommentedMap) and len(fork[key]):
            found = _first_missing(fork[key], value, prefix=f"{prefix}{key}.")
            if found:
                return found
    return None


def add_missing(fork_text: str, template_text: str, skip: tuple[str, ...] = FORK_OWNED) -> tuple[str, list[str]]:
    """fork_text with every key of template_text that it lacks added as the template's lines; the names added."""
    template = YAML().load(template_text)
    template_lines = template_text.splitlines(keepends=True)
    added: list[str] = []
    while True:
        fork_lines = fork_text.splitlines(keepends=True)
        if fork_lines and not fork_lines[-1].endswith("\n"):
            fork_lines[-1] += "\n"
        found = _first_missing(YAML().load(fork_text), template, skip)
        if found is None:
            return fork_text, added
        name, fork_map, template_map, key = found
        row, column = template_map.lc.key(key)
        block = template_lines[_start(template_lines, row) : _end(template_lines, row, column)]
        keys = list(template_map)
        following = [other for other in keys[keys.index(key) + 1 :] if other in fork_map]
        if following:  # before the fork's block of the next key the template has
            at = _start(fork_lines, fork_map.lc.key(following[0])[0])
            block = block + (["\n"] if column == 0 else [])
        else:  # after the end of the fork's last key of this mapping
            last = list(fork_map)[-1]
            at = _end(fork_lines, *fork_map.lc.key(last))
            block = (["\n"] if column == 0 else []) + block
        fork_text = "".join(fork_lines[:at] + block + fork_lines[at:])
        added.append(name)


def merge(fork_path: Path, template_path: Path) -> list[str]:
    """Add the template's missing keys to the params file at fork_path in place; the dotted names added."""
    original = Path(fork_path).read_text(encoding="utf-8")
    merged, added = add_missing(original, Path(template_path).read_text(encoding="utf-8"))
    if added:
        validate(yaml.safe_load(merged), str(fork_path))  # never write a file the stages would refuse
        with files.atomic_open(fork_path) as handle:
            handle.write(merged)
    return added


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.tools.template_params", description=__doc__.split("\n\n")[0])
    parser.add_argument("template_params", type=Path, help="the template's params.yaml (at the version updated to)")
    parser.add_argument("--params", type=Path, default=config.PARAMS_FILE, help="the fork's params.yaml")
    args = parser.parse_args(argv)
    added = merge(args.params, args.template_params)
    print(f"params.yaml: {'added ' + ', '.join(added) + ' from the template' if added else 'no new keys'}")


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, FileNotFoundError) as error:
        sys.exit(f"template_params: error: {error}")
