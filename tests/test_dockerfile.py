"""The Dockerfile installs the locked environment and ships what the service loads.

No Docker engine runs here, so the image is checked by reading the Dockerfile,
and by laying out its COPY instructions in a folder and serving from that.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

from src.pipeline import config
from tests.conftest import run

DOCKERFILE = config.ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def copies() -> list[tuple[list[str], str]]:
    return [(args[:-1], args[-1]) for name, rest in instructions() if name == "COPY" for args in [shlex.split(rest)]]


def test_base_image_is_pinned_to_the_manifests_python():
    base = [rest for name, rest in instructions() if name == "FROM"]
    assert len(base) == 1
    match = re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim-\w+(@sha256:[0-9a-f]{64})?", base[0])
    assert match, f"base image {base[0]!r} is not an exact python:X.Y.Z-slim-<debian> tag"
    manifest = json.loads(config.MANIFEST.read_text())
    assert match.group(1) == manifest["versions"]["python"]  # else the service refuses the model


def test_installs_the_lock_with_hashes_exactly_as_the_makefile_does():
    makefile = (config.ROOT / "Makefile").read_text()
    pip_install = re.search(r"^PIP_INSTALL := (.+)$", makefile, re.MULTILINE).group(1).strip()
    assert "--require-hashes" in pip_install and "requirements.lock" in pip_install
    runs = [rest for name, rest in instructions() if name == "RUN"]
    installs = [command for command in runs if "pip" in command]
    assert installs == [f"python -m {pip_install}"]
    order = [(name, rest) for name, rest in instructions() if name in ("COPY", "RUN")]
    assert order.index(("COPY", "requirements.lock ./")) < order.index(("RUN", installs[0]))


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
        folder = "" if destination in (".", "./") else destination.rstrip("/") + "/"
        for source in sources:
            if source.endswith("/"):
                paths[destination.rstrip("/")] = source.rstrip("/")
            else:
                paths[folder + Path(source).name] = source
    return paths


def test_copies_every_file_the_service_loads_and_the_context_lets_them_in():
    loaded = {str(path.relative_to(config.ROOT)) for path in
              (config.MODEL, config.MANIFEST, config.DVC_LOCK, config.PARAMS_FILE)}
    paths = image_paths()
    assert loaded | {"src"} <= set(paths), sorted(paths)
    assert all(paths[name] == name for name in loaded | {"src"})  # at the same place as in the repo
    allowed = {line[1:] for line in (config.ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    missing = set(paths.values()) - allowed
    assert not missing, f".dockerignore keeps {sorted(missing)} out of the build context"


def test_the_images_files_alone_serve_the_model(reproduced, tmp_path):
    # Lay out exactly what the COPY instructions put in /app, then predict there.
    app = tmp_path / "app"
    for target, source in image_paths().items():
        if (reproduced / source).is_dir():
            shutil.copytree(reproduced / source, app / target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (app / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(reproduced / source, app / target)
    (app / "requirements.lock").unlink()  # installed into the image, not read by the service
    shutil.copy(reproduced / "data/features/test.parquet", tmp_path / "rows.parquet")
    run(["python", "-m", "src.serving.predict", "--input", str(tmp_path / "rows.parquet"),
         "--output", str(tmp_path / "out.parquet")], cwd=app)
    assert (tmp_path / "out.parquet").read_bytes() == (reproduced / "data/predictions/test.parquet").read_bytes()
