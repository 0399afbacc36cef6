"""The penguins port's data and params edits, shared by the template's own fork tests in this folder.

tests/port/ is the template's self-test of becoming a fork: `make drop-example`
removes it with the example, because inside a fork it has nothing to test.
"""

from __future__ import annotations

import re
from pathlib import Path

PORT = Path(__file__).resolve().parent
RECORDED_AT = "2020-06-01"


def _penguins_csv() -> Path:
    import palmerpenguins

    return Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"


def _port_params(text: str, adapter: str = "penguins") -> str:
    """Checklist steps 2 and 4 on params.yaml's text: the adapter, empty recorded lists, as_of."""
    edits = [
        (r"^dataset:\n(?:  .*\n)+", f"dataset:\n  adapter: {adapter}\n"),  # no params of its own
        (r"^classes:\n(?:- .*\n)+", "classes: []\n"),
        (r"^categories:\n(?:  .*\n)+", "categories: {}\n"),
        (r"^  as_of: .*$", f"  as_of: '{RECORDED_AT}'"),
    ]
    for pattern, replacement in edits:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count == 1, f"params.yaml at HEAD has no single block matching {pattern!r}: update docs/adapt.md step 2"
    return text


def _with_id_column(source: Path, destination: Path) -> Path:
    """The package's CSV with `penguin_id` 1..n in file order; every other byte as shipped."""
    header, *rows = source.read_text(encoding="utf-8").splitlines()
    lines = [f"penguin_id,{header}", *(f"{number},{row}" for number, row in enumerate(rows, start=1))]
    destination.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return destination
