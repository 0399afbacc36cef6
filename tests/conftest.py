"""Shared fixtures. End-to-end tests work in temporary clones of HEAD.

A clone reuses this checkout's locked .venv and, when there is one, its embedded
source database through symlinks (both are git-ignored and rebuilt by `make`), so
each clone costs a `git clone`, not a reinstall. The source the tests read is the
one the pipeline reads: SOURCE_URL when it is set (it is kept for every command
the tests run), else the embedded data/source/source.sqlite.

tests/template/ pass for any dataset adapter (they read the active one and
build tiny rows from its declarations; the end-to-end ones take their as_of
dates from its source history, tests/history_dates.py); tests/example/ check
the worked example (`make drop-example` deletes them with it); tests/<name>/
check a fork's own adapter (`make new-adapter NAME=<name>` starts them).
Tests marked `slow` take a second or more (a pipeline in a clone, a subprocess, fits of
many models) and `long` ones minutes: `make test-unit` runs neither, `make test`
all but `long`, `make test-long` the rest (pyproject.toml declares both markers).
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
from src.tools import venv
from src.tools.clones import working_clone

ROOT = config.ROOT


def project_env(**extra: str | None) -> dict[str, str]:
    """The environment a stage sees under `make`: this project's venv first on PATH (src.tools.venv.venv_env).

    This process's SOURCE_URL, if set, is kept: a fork whose source is a
    database server is tested against it. A test that needs another source, or
    the embedded default, says so: `SOURCE_URL=...`, or `SOURCE_URL=None` to unset it.
    """
    return venv.venv_env(ROOT / ".venv", **extra)


def run(args: list[str], cwd: Path, check: bool = True, **extra_env: str | None) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; on failure show it in the assertion (None unsets a variable)."""
    result = subprocess.run(args, cwd=cwd, env=project_env(**extra_env), text=True, capture_output=True)
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


def require_source() -> None:
    """Fail, not skip, when the pipeline has no source: SOURCE_URL unset and no embedded database.

    `make test` builds the embedded demo source before any test runs; a fork
    whose data lives in a database server sets SOURCE_URL instead.
    """
    if not os.environ.get(config.SOURCE_URL_ENV) and not config.SOURCE_DB.exists():
        pytest.fail(
            f"no source: {config.SOURCE_URL_ENV} is unset and {config.SOURCE_DB} is missing; "
            f"set {config.SOURCE_URL_ENV} or run the tests through `make test`"
        )


def require_embedded_source() -> None:
    """Fail, not skip, when a test that copies or reads the embedded SQLite file itself cannot find it."""
    if not config.SOURCE_DB.exists():
        pytest.fail(
            f"{config.SOURCE_DB} missing: this test edits a copy of the embedded SQLite source "
            "(run the tests through `make test`, which builds it)"
        )


def make_clone(destination: Path, repo: Path = ROOT) -> Path:
    """A fresh clone of `repo`'s HEAD (default: this repository's) at `destination`, ready to run.

    The embedded source is linked in when there is one; without it the clone
    reads SOURCE_URL's source, as this checkout does.
    """
    source_dir = config.SOURCE_DIR if config.SOURCE_DB.exists() else None
    return working_clone(destination, repo=repo, venv=ROOT / ".venv", source_dir=source_dir)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    require_source()
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
    require_source()
    repo = make_clone(tmp_path_factory.mktemp("reproduced") / "clone")
    run(["dvc", "repro"], cwd=repo)
    return repo


@pytest.hookimpl(trylast=True)  # after -m has deselected: the order of what runs
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files by their heaviest test (minutes, long, slow, the rest), and by how many tests that
    heavy they hold (most first; stable otherwise): the largest jobs first, for a balanced end.

    xdist's --dist loadfile hands out files in this order (the Makefile turns off its own
    reorder, by test count): test_pipeline.py's minutes-long rebuild, handed out last, kept
    one worker busy for 80 s while the other sat idle at the end of `make test`.
    """
    rank: dict[Path, tuple[int, int]] = {}
    for item in items:
        slow = item.get_closest_marker("slow")
        if slow is not None and slow.kwargs.get("minutes"):
            weight = 0
        else:
            weight = 1 if item.get_closest_marker("long") else 2 if slow is not None else 3
        heaviest, count = rank.get(item.path, (3, 0))
        rank[item.path] = (weight, 1) if weight < heaviest else (heaviest, count + (weight == heaviest))
    items.sort(key=lambda item: (rank[item.path][0], -rank[item.path][1]))


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), children first."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(FileNotFoundError):
            children = [int(child) for child in Path(f"/proc/{current}/task/{current}/children").read_text().split()]
            found += children
            todo += children
    return found
