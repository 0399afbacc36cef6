"""The Dockerfile installs the serving lock and ships what the service loads.

These read the Dockerfile and lay out its COPY instructions in a folder to
serve from (fast); tests/template/test_image.py builds and runs the image itself.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from src.pipeline import config
from src.tools import image
from tests.conftest import run
from tests.template.frames import ADAPTER
from tests.template.test_config import imported_src_files
from tests.template.test_serve import raw_test_rows
from tests.template.test_serving_lock import FULL_LOCK, SERVING_LOCK, serving_venv_python

DOCKERFILE = config.ROOT / "Dockerfile"


@pytest.fixture(scope="session")
def image_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's packages: a venv of the serving lock alone (the same one test_serving_lock builds)."""
    return serving_venv_python(tmp_path_factory)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def copies() -> list[tuple[list[str], str]]:
    """COPY instructions from the build context (not --from another stage): (sources, destination)."""
    return [
        (args[:-1], args[-1])
        for name, rest in instructions()
        if name == "COPY"
        for args in [shlex.split(rest)]
        if not args[0].startswith("--from")
    ]


def test_base_image_is_pinned_to_the_manifests_python():
    # One base, a build argument (src/tools/image.py passes a locally built
    # equivalent where no registry is reachable), by default the official tag.
    args = [rest for name, rest in instructions() if name == "ARG" and rest.startswith("BASE=")]
    assert len(args) == 1
    match = re.fullmatch(r"BASE=python:(\d+\.\d+\.\d+)-slim-\w+(@sha256:[0-9a-f]{64})?", args[0])
    assert match, f"base image {args[0]!r} is not an exact python:X.Y.Z-slim-<debian> tag"
    manifest = json.loads(config.MANIFEST.read_text())
    assert match.group(1) == manifest["versions"]["python"]  # else the service refuses the model
    assert [rest.split()[0] for name, rest in instructions() if name == "FROM"] == ["${BASE}", "${BASE}"]


def test_installs_the_serving_lock_offline_with_hashes():
    # From the wheelhouse that src/tools/image.py fetches with the lock's
    # hashes: no index (a build step has no network of its own), every file
    # hash-checked again, no bytecode (it would embed the build's time).
    runs = [rest for name, rest in instructions() if name == "RUN"]
    pip_runs = [command for command in runs if "pip" in command]
    assert len(pip_runs) == 1
    install = shlex.split(pip_runs[0])
    assert install[:4] == ["python", "-m", "pip", "install"]
    for flag in ("--require-hashes", "--no-index", "--no-compile", "--no-cache-dir"):
        assert flag in install, flag
    assert install[install.index("-r") + 1] == f"/tmp/{SERVING_LOCK.name}"
    assert install[install.index("--find-links") + 1] == "/tmp/wheels"
    steps = [(name, rest) for name, rest in instructions() if name in ("COPY", "RUN")]
    assert steps.index(("COPY", f"{SERVING_LOCK.name} /tmp/")) < steps.index(("RUN", pip_runs[0]))
    assert ("COPY", "build/wheels/ /tmp/wheels/") in steps
    assert image.WHEELS.relative_to(config.ROOT).as_posix() == "build/wheels"
    assert FULL_LOCK.name not in {Path(source).name for sources, _ in copies() for source in sources}


def test_runs_the_service_as_a_non_root_user():
    steps = instructions()
    users = [rest for name, rest in steps if name == "USER"]
    assert users and users[-1] not in ("root", "0")
    cmd = [rest for name, rest in steps if name == "CMD"][-1]
    assert json.loads(cmd)[:3] == ["python", "-m", "src.serving.serve"] and "0.0.0.0" in json.loads(cmd)
    assert [name for name, _ in steps].index("USER") < [name for name, _ in steps].index("CMD")


def image_paths() -> dict[str, str]:
    """Path in the image (relative to WORKDIR) -> source path in the repository."""
    paths = {}
    for sources, destination in copies():
        if destination.startswith("/"):  # the install stage's inputs, not the application
            continue
        folder = "" if destination in (".", "./") else destination.rstrip("/") + "/"
        for source in sources:
            if source.endswith("/"):
                paths[destination.rstrip("/")] = source.rstrip("/")
            else:
                paths[folder + Path(source).name] = source
    return paths


SERVING = ("src.serving.serve", "src.serving.predict")
STAGES = ("gather", "featurize", "train", "evaluate")


def serving_files() -> set[str]:
    return set().union(*(imported_src_files(module) for module in SERVING))


@pytest.mark.slow
def test_serving_imports_no_stage_no_adapter_no_tool_and_no_dvclive():
    # The image holds the serving code and the pipeline modules it needs, no
    # more: the contract comes from the manifest, not from the adapter.
    loaded = serving_files()
    assert not {f"src/pipeline/{stage}.py" for stage in STAGES} & loaded
    assert not [path for path in loaded if path.startswith(("src/datasets/", "src/tools/"))]
    for path in loaded:
        tree = ast.parse((config.ROOT / path).read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not any(name.split(".")[0] == "dvclive" for name in names), path


def test_copies_every_file_the_service_loads_and_the_context_lets_them_in():
    loaded = {
        str(path.relative_to(config.ROOT))
        for path in (config.MODEL, config.MANIFEST, config.DVC_LOCK, config.PARAMS_FILE)
    }
    paths = image_paths()
    assert loaded <= set(paths), sorted(paths)
    assert all(paths[name] == name for name in loaded)  # at the same place as in the repo
    # every module serving imports, at its place in the image
    shipped = lambda f: any(f == p or f.startswith(p + "/") for p in paths if paths[p] == p)  # noqa: E731
    missing_code = sorted(path for path in serving_files() if not shipped(path))
    assert not missing_code, f"the image lacks {missing_code}"
    allowed = {line[1:] for line in (config.ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    missing = set(paths.values()) - allowed
    assert not missing, f".dockerignore keeps {sorted(missing)} out of the build context"


@pytest.mark.long
def test_the_images_files_and_packages_alone_serve_the_model(reproduced, image_python, tmp_path):
    # Lay out exactly what the COPY instructions put in /app, then predict
    # there with only the serving lock's packages installed: the model loads
    # (its runtime versions are the lock's) and gives the evaluate stage's bytes.
    app = tmp_path / "app"
    for target, source in image_paths().items():
        if (reproduced / source).is_dir():
            shutil.copytree(reproduced / source, app / target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (app / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(reproduced / source, app / target)
    assert not (app / "src" / "tools").exists()
    for path in app.glob("src/datasets/*/source.py"):  # .dockerignore keeps the source side out
        path.unlink()
    shutil.copy(reproduced / config.TEST_FEATURES.relative_to(config.ROOT), tmp_path / "rows.parquet")
    expected = (reproduced / config.PREDICTIONS.relative_to(config.ROOT)).read_bytes()
    run(
        [
            str(image_python),
            "-s",
            "-E",
            "-m",
            "src.serving.predict",
            "--input",
            str(tmp_path / "rows.parquet"),
            "--output",
            str(tmp_path / "out.parquet"),
        ],
        cwd=app,
    )
    assert (tmp_path / "out.parquet").read_bytes() == expected
    if ADAPTER.inputs is not None:  # raw rows: the adapter's serving side runs on the serving lock alone
        raw_test_rows(reproduced).to_parquet(tmp_path / "raw.parquet")
        run(
            [
                str(image_python),
                "-s",
                "-E",
                "-m",
                "src.serving.predict",
                "--raw",
                "--input",
                str(tmp_path / "raw.parquet"),
                "--output",
                str(tmp_path / "raw-out.parquet"),
            ],
            cwd=app,
        )
        assert (tmp_path / "raw-out.parquet").read_bytes() == expected
