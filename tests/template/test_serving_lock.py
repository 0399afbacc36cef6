"""requirements-serving.lock: what the serving image installs, each pin exactly requirements.lock's.

The image runs the model the pipeline trained and verified, so each of its
packages must be the version (and the files: the hashes) of the full lock, and
the model's runtime packages must all be there, or the service refuses the
model. It holds nothing that only the stages, the tools or the tests need.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from src.pipeline import artifact, config

FULL_LOCK = config.ROOT / "requirements.lock"
SERVING_LOCK = config.ROOT / "requirements-serving.lock"
SERVING_IN = config.ROOT / "requirements-serving.in"
UV = config.VENV / "bin" / "uv"
# In the full lock for the pipeline, the tools and the tests; none is for serving.
NOT_SERVED = ("dvc", "dvclive", "celery", "pytest", "uv", "ruff")


def pins(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """Canonical name -> (pinned version, sha256 hashes) of a uv/pip lock with hashes."""
    result = {}
    for line in re.sub(r"\\\n", " ", path.read_text()).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement = Requirement(line.partition(" --")[0])
        (specifier,) = requirement.specifier  # a lock pins exactly one version
        assert specifier.operator == "==", line
        result[canonicalize_name(requirement.name)] = (
            specifier.version,
            frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", line)),
        )
    return result


def roots() -> set[str]:
    """The packages requirements-serving.in names."""
    lines = (line.split("#", 1)[0].strip() for line in SERVING_IN.read_text().splitlines())
    return {canonicalize_name(Requirement(line).name) for line in lines if line}


def lock_command(path: Path) -> list[str]:
    """The `uv pip compile ...` that uv recorded in a lock's header."""
    header = path.read_text().split("\n", 2)[1]
    assert header.startswith("#    uv pip compile "), header
    return header.removeprefix("#    ").split()


def test_every_serving_pin_is_the_full_locks_version_and_hashes():
    serving, full = pins(SERVING_LOCK), pins(FULL_LOCK)
    assert serving and all(hashes for _, hashes in serving.values())
    differing = {name: (pin, full.get(name)) for name, pin in serving.items() if pin != full.get(name)}
    assert not differing, f"serving pins that differ from {FULL_LOCK.name} (run `make lock`): {differing}"
    assert roots() <= set(serving)


def test_the_pipelines_tools_and_tests_stay_out_of_the_serving_lock():
    serving, full = pins(SERVING_LOCK), pins(FULL_LOCK)
    assert set(NOT_SERVED) <= set(full)  # else this test checks nothing
    assert not set(NOT_SERVED) & set(serving)


def test_the_models_runtime_versions_are_the_serving_locks():
    # Loading compares these with the manifest and refuses on any difference.
    serving = pins(SERVING_LOCK)
    versions = json.loads(config.MANIFEST.read_text())["versions"]
    locked = {name: serving.get(canonicalize_name(name), (None,))[0] for name in artifact.RUNTIME_PACKAGES}
    assert locked == {name: versions[name] for name in artifact.RUNTIME_PACKAGES}
    python = lock_command(SERVING_LOCK)[lock_command(SERVING_LOCK).index("--python-version") + 1]
    assert versions["python"].startswith(f"{python}.")


@pytest.mark.slow
def test_make_lock_writes_the_serving_lock_as_committed(tmp_path):
    # The header's command is the Makefile's, and rerun now it resolves the
    # same packages and versions (a requirements-serving.in edited without
    # `make lock` fails here). Hashes are compared with the full lock above.
    command = lock_command(SERVING_LOCK)
    # The recipe as make expands it (-n: printed, not run); uv leaves its -q out of the header.
    recipe = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed-from-lock", "lock"],
        cwd=config.ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.replace(" -q ", " ")
    assert re.search(r"(^|; )\.venv/bin/" + re.escape(" ".join(command)) + ";", recipe, re.MULTILINE), (
        "the Makefile's lock target does not run the command in the serving lock's header"
    )
    output = tmp_path / SERVING_LOCK.name
    command[command.index("-o") + 1] = str(output)
    result = subprocess.run([str(UV), *command[1:]], cwd=config.ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    resolved, committed = pins(output), pins(SERVING_LOCK)
    assert {name: version for name, (version, _) in resolved.items()} == {
        name: version for name, (version, _) in committed.items()
    }


def _environment() -> dict[str, str]:
    """This process's environment without what would point a Python at another venv."""
    return {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}


def serving_venv_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv of requirements-serving.lock alone, hash-checked; built once per test session.

    Reused through a copy of the lock it was installed from, kept on disk: pytest
    loads this module under its file name and test_dockerfile.py imports it again
    as tests.template.test_serving_lock, so an in-memory cache would not be shared.
    """
    folder = tmp_path_factory.getbasetemp() / "serving-venv"
    installed_from = folder / "installed-from.lock"
    if installed_from.exists() and installed_from.read_bytes() == SERVING_LOCK.read_bytes():
        return folder / "bin" / "python"
    for command in (
        [str(UV), "venv", "--quiet", "--clear", "--python", sys.executable, str(folder)],
        [
            str(UV),
            "pip",
            "install",
            "--quiet",
            "--python",
            str(folder / "bin" / "python"),
            "--require-hashes",
            "-r",
            str(SERVING_LOCK),
        ],
    ):
        result = subprocess.run(command, cwd=config.ROOT, env=_environment(), capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(command)}\n{result.stderr}"
    installed_from.write_bytes(SERVING_LOCK.read_bytes())
    return folder / "bin" / "python"


@pytest.fixture(scope="session")
def serving_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return serving_venv_python(tmp_path_factory)


# The distributions of every module loaded once the service is imported.
LOADED = """
import json, sys
import src.serving.predict, src.serving.serve
from importlib.metadata import packages_distributions
provided = packages_distributions()
print(json.dumps(sorted({dist for name in list(sys.modules) for dist in provided.get(name.split(".")[0], [])})))
"""


@pytest.mark.slow
def test_a_venv_of_the_serving_lock_alone_imports_the_service(serving_python):
    environment = _environment()
    installed = subprocess.run(
        [str(UV), "pip", "freeze", "--python", str(serving_python)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    frozen = dict(line.split("==") for line in installed.split())
    assert {canonicalize_name(name): version for name, version in frozen.items()} == {
        name: version for name, (version, _) in pins(SERVING_LOCK).items()
    }
    check = subprocess.run(
        [str(UV), "pip", "check", "--python", str(serving_python)], env=environment, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr  # every dependency is in the lock
    # -s -E: nothing from the user's site or PYTHONPATH; the checkout's src/ comes from the working directory.
    result = subprocess.run(
        [str(serving_python), "-s", "-E", "-c", LOADED],
        cwd=config.ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    loaded = {canonicalize_name(name) for name in json.loads(result.stdout)}
    # every package requirements-serving.in names is one the service loads
    assert roots() <= loaded, f"requirements-serving.in names packages the service does not load: {roots() - loaded}"
