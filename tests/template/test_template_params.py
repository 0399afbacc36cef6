"""src/tools/template_params.py: a template's new params keys enter a fork's params.yaml as added lines only."""

from __future__ import annotations

import difflib
import re

import pytest
import yaml

from src.pipeline import config
from src.pipeline.params import ParamsError, validate
from src.tools.template_params import add_missing, merge

# The repository's own params.yaml, whatever its values: these tests pass in a fork too.
TEXT = config.PARAMS_FILE.read_text(encoding="utf-8")
# A fork of it: another adapter with no params of its own, its own lists and a tuned value.
_head, _rest = TEXT.split("\ndataset:\n")
_rest = re.sub(
    r"^    max_iter: .*$",
    "    max_iter: 80",
    "\ngather:\n" + _rest.split("\ngather:\n")[1],
    count=1,
    flags=re.MULTILINE,
)
FORK = (
    _head
    + "\ndataset:\n  adapter: penguins\n"
    + re.split(r"^classes:", _rest, flags=re.MULTILINE)[0]
    + "classes:\n- Adelie\n- Gentoo\ncategories:\n  island:\n  - Biscoe\n"
)


def _after(text: str, key: str, lines: str) -> str:
    """text with `lines` inserted after the one line that starts with `key`."""
    matches = list(re.finditer(rf"^{re.escape(key)}.*\n", text, flags=re.MULTILINE))
    assert len(matches) == 1, f"params.yaml has {len(matches)} lines starting {key!r}: update this test"
    return text[: matches[0].end()] + lines + text[matches[0].end() :]


def _added_lines(before: str, after: str) -> list[str]:
    """The lines `after` adds; fails if it removed or changed any line of `before`."""
    diff = list(difflib.ndiff(before.splitlines(keepends=True), after.splitlines(keepends=True)))
    assert not [line for line in diff if line.startswith("- ")], "a line of the fork's file was removed or changed"
    return [line[2:] for line in diff if line.startswith("+ ")]


def test_the_fork_fixture_is_a_valid_params_file():
    assert validate(yaml.safe_load(FORK)).dataset.adapter == "penguins"
    assert "\n    max_iter: 80\n" in FORK and "target_delay_minutes" not in FORK


def test_a_new_key_arrives_with_its_comment_before_the_key_that_follows_it():
    template = _after(TEXT, "  importance_rows: ", "  # Why.\n  new_key: 3\n")
    merged, added = add_missing(FORK, template)
    assert added == ["evaluate.new_key"]
    assert _added_lines(FORK, merged) == ["  # Why.\n", "  new_key: 3\n"]
    # Right after the key it follows in the template, before whatever the fork has next.
    assert re.search(r"^  importance_rows: .*\n  # Why\.\n  new_key: 3\n", merged, re.MULTILINE)


def test_keys_at_the_end_of_a_section_and_new_sections_arrive_too():
    template = _after(_after(TEXT, "  importance_repeats: ", "  last: 1\n"), "    cv_folds: ", "    nested: 2\n")
    template = template.replace("\nfeaturize:\n", "\n# A section of its own.\nreport:\n  pages: 2\n\nfeaturize:\n")
    merged, added = add_missing(FORK, template)
    assert added == ["report", "train.stacking.nested", "evaluate.last"]
    assert sorted(_added_lines(FORK, merged)) == sorted(
        ["# A section of its own.\n", "report:\n", "  pages: 2\n", "\n", "    nested: 2\n", "  last: 1\n"]
    )
    assert "\n\n# A section of its own.\nreport:\n  pages: 2\n\nfeaturize:\n" in merged
    assert re.search(r"^    cv_folds: .*\n    nested: 2\n\nevaluate:\n", merged, re.MULTILINE)
    assert re.search(r"^  importance_repeats: .*\n  last: 1\n\n# Recorded", merged, re.MULTILINE)
    document = yaml.safe_load(merged)
    assert document["report"] == {"pages": 2} and document["evaluate"]["last"] == 1
    assert document["train"]["stacking"]["nested"] == 2


def test_the_forks_own_sections_and_values_stay_the_forks():
    # The template's dataset section (the example's own param) and recorded lists never enter the fork.
    merged, added = add_missing(FORK, TEXT)
    assert (merged, added) == (FORK, [])


def test_merge_refuses_a_result_the_schema_refuses_and_leaves_the_file(tmp_path):
    fork, template = tmp_path / "params.yaml", tmp_path / "template.yaml"
    fork.write_text(FORK, encoding="utf-8")
    # A key the fork's schema does not know yet (its params.py was not updated).
    template.write_text(_after(TEXT, "  threshold: ", "  unknown_yet: 1\n"), encoding="utf-8")
    with pytest.raises(ParamsError, match="evaluate.unknown_yet: unknown key"):
        merge(fork, template)
    assert fork.read_text(encoding="utf-8") == FORK


def test_merge_without_new_keys_writes_nothing(tmp_path):
    fork, template = tmp_path / "params.yaml", tmp_path / "template.yaml"
    fork.write_text(FORK, encoding="utf-8")
    template.write_text(TEXT, encoding="utf-8")
    stamp = fork.stat().st_mtime_ns
    assert merge(fork, template) == []
    assert fork.stat().st_mtime_ns == stamp
