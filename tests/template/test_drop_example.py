"""`make drop-example`: the example leaves in one staged change, only once a fork's adapter is active."""

from __future__ import annotations

import sys

import pytest
import yaml

from src.pipeline import config
from src.tools import drop_example
from src.tools.clones import working_clone
from src.tools.lock_summary import read_pins
from tests.conftest import run

PARAMS_TEXT = config.PARAMS_FILE.read_text(encoding="utf-8")

REQUIREMENTS = """\
# Direct dependencies. A line marked [example] in its comment is the example's.
pandas==3.1.1          # frames
exampledata==0.0.3     # [example] the example data
#old==1.0             # [example] a commented-out line is no requirement
palmerpenguins==0.1.6  # the port test's data, not marked [example] first
"""


def test_only_requirement_lines_marked_example_are_the_examples():
    assert drop_example.example_requirements(REQUIREMENTS) == ["exampledata==0.0.3     # [example] the example data"]
    assert drop_example.without_example_requirements(REQUIREMENTS) == REQUIREMENTS.replace(
        "exampledata==0.0.3     # [example] the example data\n", ""
    )


def test_the_template_marks_its_example_package_once():
    text = (config.ROOT / drop_example.REQUIREMENTS_IN).read_text(encoding="utf-8")
    marked = drop_example.example_requirements(text)
    example_present = drop_example.example_name() is not None
    assert len(marked) == (1 if example_present else 0), marked


def test_each_lock_records_the_command_that_made_it():
    for name in drop_example.LOCKS:
        command = drop_example.recorded_command((config.ROOT / name).read_text(encoding="utf-8"), name)
        assert command[:3] == ["uv", "pip", "compile"] and command[command.index("-o") + 1] == name
    with pytest.raises(drop_example.DropError, match="records no `uv pip compile` command"):
        drop_example.recorded_command("pandas==3.1.1\n", "requirements.lock")


def test_lists_recorded_for_another_adapter_are_cleared_and_the_adapters_own_kept(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS_TEXT, encoding="utf-8")
    recorded = yaml.safe_load(PARAMS_TEXT)["categories"]
    assert not drop_example.clear_foreign_lists(path, tuple(recorded))  # the active adapter's own: kept
    assert path.read_text(encoding="utf-8") == PARAMS_TEXT
    if recorded:
        assert drop_example.clear_foreign_lists(path, ("a_feature_no_list_records",))
        after = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert (after["categories"], after["classes"]) == ({}, [])


@pytest.mark.slow  # a clone, the scaffold, a re-lock with uv and git: about 40 s
def test_drop_refuses_the_active_example_then_removes_it_in_one_staged_change(tmp_path):
    clone = working_clone(tmp_path / "clone", venv=config.VENV, source_dir=None)
    drop = [sys.executable, "-m", "src.tools.drop_example"]
    if drop_example.example_name(clone) is None:  # a fork that dropped it already
        assert "nothing to drop" in run(drop, cwd=clone).stdout
        return
    refused = run(drop, cwd=clone, check=False)
    assert refused.returncode == 1 and "still the example ('flights'): run `make new-adapter" in refused.stderr
    assert run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=clone).stdout == ""

    run([sys.executable, "-m", "src.tools.scaffold", "churn"], cwd=clone)
    before = {name: read_pins((clone / name).read_text()).packages for name in drop_example.LOCKS}
    (marked,) = drop_example.example_requirements((clone / drop_example.REQUIREMENTS_IN).read_text(encoding="utf-8"))
    pin = marked.split("#")[0].strip()
    dropped = run(drop, cwd=clone).stdout
    assert f"requirements.in: dropped {pin}" in dropped and "every other pin unchanged" in dropped
    staged = run(["git", "diff", "--cached", "--name-status"], cwd=clone).stdout.splitlines()
    deleted = {line.split("\t")[1] for line in staged if line.startswith("D\t")}
    tracked = {
        "dvc.lock",
        "models/manifest.json",
        "metrics/validation.json",
        "eval/metrics.json",
        "metrics/featurize.json",
    }
    assert tracked <= deleted
    example = ("src/datasets/flights/", "src/demos/flights.py", "tests/example/", "tests/port/")
    assert all(path.startswith(example) for path in deleted if path not in tracked)
    assert not (clone / "src" / "datasets" / "flights").exists() and not (clone / "tests" / "example").exists()
    assert {line.split("\t")[1] for line in staged if line.startswith("M\t")} == {
        "requirements.in",
        "requirements.lock",
        "params.yaml",
    }
    after = {name: read_pins((clone / name).read_text()).packages for name in drop_example.LOCKS}
    assert after["requirements.lock"] == {
        k: v for k, v in before["requirements.lock"].items() if k != pin.split("==")[0]
    }
    assert after["requirements-serving.lock"] == before["requirements-serving.lock"]
    run([sys.executable, "-m", "src.pipeline.check_params", "--check"], cwd=clone)
    assert "nothing to drop" in run(drop, cwd=clone).stdout
