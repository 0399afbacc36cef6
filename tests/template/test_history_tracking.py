"""The embedded history is data: ingest tracks it with DVC, and a second clone gets it by `make`.

A fork's history is what ingest built on one machine. Untracked, a colleague's
fresh clone could not rebuild anything; tracked, its pointer travels with git
and its bytes with the DVC remote, and the Makefile pulls it before any stage.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from src.pipeline import config
from src.tools.clones import working_clone
from tests.conftest import run

pytestmark = pytest.mark.long

POINTER = f"{config.SOURCE_DB.relative_to(config.ROOT)}.dvc"
DATABASE = config.SOURCE_DB.relative_to(config.ROOT)


def _md5(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def _ingest(repo: Path, csv: Path, day: str) -> str:
    return run(
        ["python", "-m", "src.tools.ingest", str(csv), "--table", "items", "--id", "item_id", "--recorded-at", day],
        cwd=repo,
        SOURCE_URL=None,
    ).stdout  # the embedded history, whatever the shell


def test_ingest_tracks_the_history_and_a_second_clone_pulls_the_same_bytes(tmp_path):
    first = working_clone(tmp_path / "first", venv=config.VENV, source_dir=None)
    remote = tmp_path / "dvc-remote"
    run(["dvc", "remote", "modify", "storage", "url", str(remote)], cwd=first)
    csv = tmp_path / "items.csv"
    csv.write_text("item_id,colour\n1,red\n2,blue\n", encoding="utf-8")

    said = _ingest(first, csv, "2020-01-01")
    assert f"git add {POINTER}" in said, said
    assert (first / POINTER).is_file()
    assert run(["git", "status", "--porcelain", "--", str(DATABASE)], cwd=first).stdout == ""  # git ignores the bytes
    assert "up to date" in run(["dvc", "status", POINTER], cwd=first).stdout

    # A second ingest into the tracked file: a new version of the pointer, the old bytes still in the cache.
    csv.write_text("item_id,colour\n1,red\n2,green\n3,blue\n", encoding="utf-8")
    before = (first / POINTER).read_text(encoding="utf-8")
    _ingest(first, csv, "2020-02-01")
    assert (first / POINTER).read_text(encoding="utf-8") != before
    run(["git", "add", POINTER, ".dvc/config"], cwd=first)
    run(["git", "commit", "-q", "-m", "history: two ingests"], cwd=first)
    run(["dvc", "push", POINTER], cwd=first)

    # The second machine: a clone of the first, nothing linked but the venv; `make` pulls the history.
    second = working_clone(tmp_path / "second", repo=first, venv=config.VENV, source_dir=None)
    assert not (second / DATABASE).exists()
    made = run(["make", "--no-print-directory", str(DATABASE)], cwd=second, SOURCE_URL=None)
    assert "dvc pull" in made.stdout, made.stdout
    assert _md5(second / DATABASE) == _md5(first / DATABASE)
    assert "up to date" in run(["make", "--no-print-directory", str(DATABASE)], cwd=second, SOURCE_URL=None).stdout

    # Without the remote's copy, the pull fails and says so: no demo builder is tried instead.
    third = working_clone(tmp_path / "third", repo=first, venv=config.VENV, source_dir=None)
    run(["dvc", "remote", "modify", "--local", "storage", "url", str(tmp_path / "empty-remote")], cwd=third)
    failed = run(["make", "--no-print-directory", str(DATABASE)], cwd=third, check=False, SOURCE_URL=None)
    assert failed.returncode != 0
    assert "missing" in (failed.stdout + failed.stderr).lower(), failed.stderr
    assert "demo source" not in failed.stdout + failed.stderr

    # The tools' clones (verify, bench, tests) link the history in: beside the clone's own pointer.
    linked = working_clone(tmp_path / "linked", repo=first, venv=config.VENV, source_dir=first / DATABASE.parent)
    assert (linked / DATABASE).is_symlink() and not (linked / POINTER).is_symlink()
    status = run(["dvc", "status", POINTER], cwd=linked).stdout  # the bytes match; the clone's own cache is empty
    assert "modified" not in status and "deleted" not in status, status
