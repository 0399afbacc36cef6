"""Data versions as git tags (src/tools/data_version.py), end to end in one temporary clone.

Two versions are cut at early `as_of` dates (small snapshots keep each pipeline
run short; the code path is the full one). The tests then run in file order on
that clone, each checking out what it needs: restore from the remote, rebuild
from the source, diff, garbage-collect safely, and fail clearly.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from src.pipeline import config
from src.tools.data_version import set_as_of, tag_name
from src.tools.git import git
from tests.conftest import make_clone, run
from tests.dvc_helpers import drop_local_data, output_hashes

OLDER, NEWER = "2013-01-10", "2013-01-20"
OLDER_TAG, NEWER_TAG = tag_name(OLDER), tag_name(NEWER)
UP_TO_DATE = "Data and pipelines are up to date."


def checkout(root: Path, rev: str) -> None:
    git(["checkout", "-q", rev], root)


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    if not config.SOURCE_DB.exists():
        pytest.fail(f"{config.SOURCE_DB} missing: run the tests through `make test`")
    base = tmp_path_factory.mktemp("data-versions")
    root = make_clone(base / "clone")
    remote = base / "remote"
    # The documented per-machine override; tests never touch the shipped default in $HOME.
    run(["dvc", "remote", "modify", "--local", "storage", "url", str(remote)], root)
    branch = git(["branch", "--show-current"], root)
    hashes = {}
    for as_of in (OLDER, NEWER):
        run(["python", "-m", "src.tools.data_version", "cut", as_of], root)
        hashes[tag_name(as_of)] = output_hashes(root)
    return SimpleNamespace(root=root, remote=remote, branch=branch, hashes=hashes)


def test_set_as_of_changes_one_line_and_keeps_comments(tmp_path: Path):
    params = tmp_path / "params.yaml"
    shutil.copy(config.PARAMS_FILE, params)
    before = params.read_text(encoding="utf-8").splitlines()
    assert set_as_of(params, "2013-06-30") is True
    after = params.read_text(encoding="utf-8").splitlines()
    changed = [(old, new) for old, new in zip(before, after) if old != new]
    assert len(before) == len(after) and len(changed) == 1
    assert changed[0][1] == "  as_of: '2013-06-30'"
    assert set_as_of(params, "2013-06-30") is False


@pytest.mark.slow
def test_cut_commits_tags_and_pushes(versions):
    root = versions.root
    assert git(["status", "--porcelain", "--untracked-files=no"], root) == ""
    for tag in (OLDER_TAG, NEWER_TAG):
        assert git(["cat-file", "-t", tag], root) == "tag"  # annotated
        committed = set(git(["show", "--name-only", "--format=", tag], root).splitlines())
        tracked_outputs = {str(path.relative_to(config.ROOT)) for path in (config.MANIFEST, config.METRICS)}
        assert {"params.yaml", "dvc.lock", *tracked_outputs} <= committed
    assert f"as_of: '{OLDER}'" in git(["show", f"{OLDER_TAG}:params.yaml"], root)
    # The tag was made after the push: the remote holds all of its data.
    assert "in sync" in run(["dvc", "status", "--cloud"], root).stdout
    assert any(versions.remote.rglob("*")), "nothing was pushed to the remote"


@pytest.mark.slow
def test_restore_older_tag_from_remote_is_byte_identical(versions):
    root = versions.root
    drop_local_data(root)
    checkout(root, OLDER_TAG)
    run(["dvc", "pull"], root)
    assert output_hashes(root) == versions.hashes[OLDER_TAG]
    assert UP_TO_DATE in run(["dvc", "status"], root).stdout
    repro = run(["dvc", "repro"], root).stdout
    assert "Running stage" not in repro and UP_TO_DATE in repro


@pytest.mark.slow
def test_rebuild_from_source_at_tag_gives_same_hashes(versions):
    root = versions.root
    checkout(root, OLDER_TAG)
    drop_local_data(root)  # nothing to restore from: every byte comes from the source
    run(["dvc", "repro", "--force"], root)
    assert output_hashes(root) == versions.hashes[OLDER_TAG]
    assert git(["status", "--porcelain", "--untracked-files=no"], root) == "", "dvc.lock or a tracked output changed"


@pytest.mark.slow
def test_params_and_metrics_diff_between_versions(versions):
    root = versions.root
    params = json.loads(run(["dvc", "params", "diff", OLDER_TAG, NEWER_TAG, "--json"], root).stdout)
    assert params["params.yaml"]["gather.as_of"] == {"old": OLDER, "new": NEWER}
    metrics = json.loads(run(["dvc", "metrics", "diff", OLDER_TAG, NEWER_TAG, "--json"], root).stdout)
    rows = metrics[str(config.FEATURIZE_SUMMARY.relative_to(config.ROOT))]["snapshot_rows"]
    assert rows["new"] > rows["old"]


@pytest.mark.slow
def test_gc_with_all_tags_keeps_every_version(versions):
    root = versions.root
    checkout(root, versions.branch)
    run(["dvc", "pull"], root)
    run(["dvc", "gc", "--workspace", "--all-tags", "--all-commits", "--cloud", "--force"], root)
    checkout(root, versions.branch)
    for tag in (OLDER_TAG, NEWER_TAG):
        drop_local_data(root)  # from the remote, not from what gc left in the cache
        run(["python", "-m", "src.tools.data_version", "restore", tag], root)
        assert output_hashes(root) == versions.hashes[tag]
        assert UP_TO_DATE in run(["dvc", "status"], root).stdout


@pytest.mark.slow
def test_tag_missing_from_cache_and_remote_gives_clear_message(versions):
    root = versions.root
    checkout(root, versions.branch)
    run(["dvc", "pull"], root)
    # Without --all-tags, gc keeps only the workspace's data: the older version is gone everywhere.
    run(["dvc", "gc", "--workspace", "--cloud", "--force"], root)
    result = run(["python", "-m", "src.tools.data_version", "restore", OLDER_TAG], root, check=False)
    assert result.returncode != 0
    message = result.stderr
    assert "Traceback" not in result.stdout + message
    assert f"data-version: error: {OLDER_TAG} is checked out" in message
    assert "neither in the local cache nor on remote 'storage'" in message
    for output in (config.SNAPSHOT, config.MODEL):
        assert str(output.relative_to(config.ROOT)) in message
    assert "dvc repro --force" in message


@pytest.mark.slow
def test_bad_input_is_named(versions):
    root = versions.root
    checkout(root, versions.branch)

    def error(*args: str) -> str:
        result = run(["python", "-m", "src.tools.data_version", *args], root, check=False)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        return result.stderr

    assert "as_of '2013-13-01' is neither a date" in error("cut", "2013-13-01")
    assert f"tag {NEWER_TAG} already exists" in error("cut", NEWER)
    assert f"no tag 'data/1999-01-01'" in error("restore", "data/1999-01-01")
    assert OLDER_TAG in error("restore", "data/1999-01-01")  # lists the versions there are
    (root / "params.yaml").write_text((root / "params.yaml").read_text() + "\n", encoding="utf-8")
    assert "uncommitted changes to tracked files" in error("cut", "2013-01-31")
    git(["checkout", "--", "params.yaml"], root)
    checkout(root, OLDER_TAG)
    assert "HEAD is detached" in error("cut", "2013-01-31")
    checkout(root, versions.branch)
