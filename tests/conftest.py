"""Shared fixtures. End-to-end tests work in temporary clones of HEAD.

A clone reuses this checkout's locked .venv and demo source database through
symlinks (both are git-ignored and rebuilt by `make`), so each clone costs a
`git clone`, not a reinstall.

tests/template/ pass for any dataset adapter (they read the active one and
build tiny rows from its declarations); tests/example/ check the worked
example (`make drop-example` deletes them with it); tests/<name>/ check a
fork's own adapter (`make new-adapter NAME=<name>` starts them).
Tests marked `slow` run the whole pipeline in a clone; `-m "not slow"` skips them.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from src.pipeline import config
from src.tools.clones import working_clone

ROOT = config.ROOT


def venv_env(**extra: str) -> dict[str, str]:
    """The environment a stage sees under `make`: the venv's python first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(ROOT / ".venv")
    env.pop(config.SOURCE_URL_ENV, None)
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; on failure show it in the assertion."""
    result = subprocess.run(args, cwd=cwd, env=venv_env(**extra_env), text=True, capture_output=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


@contextlib.contextmanager
def running_service(app) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port; yield its base URL; stop it afterwards."""
    import uvicorn  # only the tests that serve pay for importing it

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the OS picks a free port; no race with other tests
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(600):  # bounded wait for start-up
        if server.started or not thread.is_alive():
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def require_demo_source() -> None:
    """Fail, not skip, when the demo source is missing: `make test` builds it before any test runs."""
    if not config.SOURCE_DB.exists():
        pytest.fail(f"{config.SOURCE_DB} missing: run the tests through `make test`")


def make_clone(destination: Path) -> Path:
    """A fresh clone of this repository's HEAD at `destination`, ready to run."""
    return working_clone(destination, venv=ROOT / ".venv")


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    require_demo_source()
    return make_clone(tmp_path / "clone")


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of HEAD with every pipeline output built, once per test session.

    Shared by the tests that need a trained model and the evaluate stage's
    predictions: treat it as read-only (copy files out before changing them).
    `dvc repro` directly, not `make repro`: the clone's fresh requirements.lock
    is newer than the linked venv's stamp, so make would check (and touch) the
    stamp of a venv that belongs to this checkout.
    """
    require_demo_source()
    repo = make_clone(tmp_path_factory.mktemp("reproduced") / "clone")
    run(["dvc", "repro"], cwd=repo)
    return repo
