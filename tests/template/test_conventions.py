"""Project conventions: tool settings in pyproject.toml, lint clean, CI entry point, license."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from src.pipeline import config
from tests.conftest import run

ROOT = config.ROOT
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def locked_version(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==([^\s\\]+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    assert match, f"{package} is not pinned in requirements.lock"
    return match.group(1)


def test_pyproject_holds_the_ruff_and_pytest_settings(pytestconfig: pytest.Config):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["requires-python"] == "==3.11.*"
    # Dependencies live in requirements.in and requirements.lock only.
    assert "dependencies" not in project["project"]
    ruff = project["tool"]["ruff"]
    assert ruff["line-length"] == 120 and ruff["lint"]["select"]
    pytest_settings = project["tool"]["pytest"]["ini_options"]
    assert pytest_settings["testpaths"] == ["tests"]
    # The running session read them: `slow` and `long` are registered from pyproject.toml.
    registered = [line.split(":")[0] for line in pytestconfig.getini("markers")]
    assert {"slow", "long"} <= set(registered), registered


def test_ruff_check_passes():
    result = run([str(ROOT / ".venv" / "bin" / "ruff"), "check", "--no-cache", "."], cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_every_file_as_it_is():
    """`make format` (and the pre-commit hook) has run on every Python file: the tree has one layout."""
    result = run([str(ROOT / ".venv" / "bin" / "ruff"), "format", "--check", "--no-cache", "."], cwd=ROOT, check=False)
    assert result.returncode == 0, f"files `make format` would change:\n{result.stdout}{result.stderr}"


def test_workflow_runs_the_ci_entry_point():
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    commands = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any("bash .ci/run" in command for command in commands)
    assert (ROOT / ".ci" / "run").is_file()


def test_pre_commit_hooks_pin_the_locked_versions():
    hooks = {
        repo["repo"].rsplit("/", 1)[-1]: repo
        for repo in yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))["repos"]
    }
    assert hooks["ruff-pre-commit"]["rev"] == f"v{locked_version('ruff')}"
    assert [hook["id"] for hook in hooks["ruff-pre-commit"]["hooks"]] == ["ruff-check", "ruff-format"]
    assert hooks["dvc"]["rev"] == locked_version("dvc")
    # The hook that pairs notebooks with their scripts writes what the locked jupytext reads.
    assert hooks["jupytext"]["rev"] == f"v{locked_version('jupytext')}"
    assert [hook["id"] for hook in hooks["nbstripout"]["hooks"]] == ["nbstripout"]


def test_license_is_mit():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
    assert tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["license"] == "MIT"
