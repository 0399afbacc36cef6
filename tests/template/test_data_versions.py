"""Data versions as git tags (src/tools/data_version.py), end to end in one temporary clone.

The clone's branch is first reproduced at an early `as_of`, committed and
pushed, as a user's branch would be. Two versions are then cut at two early
moments of the active adapter's source history, the older with fewer rows
(tests/history_dates.py picks them; small snapshots keep each pipeline run short;
the code path is the full one), and after each cut the branch, HEAD, git's view of the files, params.yaml
and the workspace outputs must be exactly as before. The tests then run in file
order on that clone, each going where it needs: restore each version from the
remote and come back to the branch, rebuild from the source, diff,
garbage-collect safely, and fail clearly.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from src.pipeline import config, lockfile
from src.tools.data_version import WORKTREE_PREFIX, set_as_of, tag_name
from src.tools.git import git
from tests.conftest import ROOT, make_clone, require_source, run
from tests.dvc_helpers import drop_local_data, output_hashes
from tests.history_dates import early_moments, spare_dates

UP_TO_DATE = "Data and pipelines are up to date."
SNAPSHOT, MODEL = (path.relative_to(config.ROOT) for path in (config.SNAPSHOT, config.MODEL))


def dates() -> SimpleNamespace:
    """The as_of values, from the source history (for the example: 2013-01-10 and -20, then -11, -12, -13).

    `older` and `newer` are two moments, `older` with fewer rows. The others only
    need dates of their own (one tag each), so two recorded dates are enough:
    `branch` (the branch's as_of), `third` (cut from a restored version) and
    `unbuilt` (cuts that must fail before building) are the days after `older`.
    """
    older, newer = early_moments(7, 17)
    branch, third, unbuilt = spare_dates(3, after=older, avoid=[newer])
    return SimpleNamespace(
        branch=branch,
        older=older,
        newer=newer,
        third=third,
        unbuilt=unbuilt,
        older_tag=tag_name(older),
        newer_tag=tag_name(newer),
    )


def checkout(root: Path, rev: str) -> None:
    git(["checkout", "-q", rev], root)


def data_version(root: Path, *args: str, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
    return run(["python", "-m", "src.tools.data_version", *args], root, check=check, **extra_env)


def state(root: Path) -> dict[str, object]:
    """All that a cut must leave as it found it, and all that a cut's worktree could leave behind."""
    return {
        "branch": git(["branch", "--show-current"], root),
        "HEAD": git(["rev-parse", "HEAD"], root),
        "branches": git(["for-each-ref", "refs/heads"], root),
        "status": git(["status", "--porcelain"], root),
        "params.yaml": (root / "params.yaml").read_bytes(),
        "outputs": output_hashes(root),
        "worktrees": git(["worktree", "list", "--porcelain"], root),
        "leftovers": sorted(path.name for path in (root / ".dvc" / "tmp").glob(WORKTREE_PREFIX + "*")),
    }


def _md5(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def differing_outputs(root: Path, rev: str) -> list[str]:
    """Output files whose bytes on disk are not those that dvc.lock at `rev` records.

    A directory output is recorded as the MD5 of a `.dir` listing in the DVC
    cache; each file it lists is compared, and so is the set of files.
    """
    lock = lockfile.parse_lock(git(["show", f"{rev}:dvc.lock"], root), f"{rev}:dvc.lock")
    differing = []
    for output in lockfile.outputs(lock):
        path, recorded = root / output, lockfile.locked_md5(lock, output, f"{rev}:dvc.lock")
        if recorded.endswith(".dir"):
            listing = root / ".dvc" / "cache" / "files" / "md5" / recorded[:2] / recorded[2:]
            expected = {entry["relpath"]: entry["md5"] for entry in json.loads(listing.read_text(encoding="utf-8"))}
            found = {str(file.relative_to(path)): _md5(file) for file in path.rglob("*") if file.is_file()}
            differing += [
                f"{output}/{name}"
                for name in sorted(set(expected) | set(found))
                if expected.get(name) != found.get(name)
            ]
        elif not path.is_file() or _md5(path) != recorded:
            differing.append(output)
    return differing


def committed_outputs_differing(root: Path, rev: str) -> list[str]:
    """Outputs committed to git at `rev` whose bytes there are not those its dvc.lock records."""
    lock = lockfile.parse_lock(git(["show", f"{rev}:dvc.lock"], root), f"{rev}:dvc.lock")
    in_git = [
        output
        for output in lockfile.outputs(lock)
        if subprocess.run(["git", "cat-file", "-e", f"{rev}:{output}"], cwd=root).returncode == 0
    ]
    assert in_git, f"{rev} commits no output: the manifest and metrics are kept in git"
    return [
        output
        for output in in_git
        if hashlib.md5(
            subprocess.run(["git", "show", f"{rev}:{output}"], cwd=root, capture_output=True, check=True).stdout
        ).hexdigest()
        != lockfile.locked_md5(lock, output, f"{rev}:dvc.lock")
    ]


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    require_source()
    when = dates()
    base = tmp_path_factory.mktemp("data-versions")
    root = make_clone(base / "clone")
    remote = base / "remote"
    # The documented per-machine override; tests never touch the shipped default in $HOME.
    run(["dvc", "remote", "modify", "--local", "storage", "url", str(remote)], root)
    # The branch as a user has it: built, committed and pushed, with outputs a cut must not touch.
    set_as_of(root / "params.yaml", when.branch)
    run(["dvc", "repro"], root)
    git(["commit", "-q", "--all", "-m", f"Train on the snapshot as of {when.branch}"], root)
    run(["dvc", "push"], root)
    before = state(root)
    after = {}
    for as_of in (when.older, when.newer):
        data_version(root, "cut", as_of)
        after[tag_name(as_of)] = state(root)
    return SimpleNamespace(
        root=root,
        remote=remote,
        branch=before["branch"],
        before=before,
        after=after,
        when=when,
        tags=(when.older_tag, when.newer_tag),
    )


def test_set_as_of_changes_one_line_and_keeps_comments(tmp_path: Path):
    params = tmp_path / "params.yaml"
    shutil.copy(config.PARAMS_FILE, params)
    before = params.read_text(encoding="utf-8").splitlines()
    # Any date other than the shipped one: the file's text only is under test.
    as_of = next(day for day in ("2000-01-01", "2000-01-02") if f"as_of: '{day}'" not in "\n".join(before))
    assert set_as_of(params, as_of) is True
    after = params.read_text(encoding="utf-8").splitlines()
    changed = [(old, new) for old, new in zip(before, after, strict=False) if old != new]
    assert len(before) == len(after) and len(changed) == 1
    assert changed[0][1] == f"  as_of: '{as_of}'"
    assert set_as_of(params, as_of) is False


def test_make_data_restore_takes_ref_or_tag():
    def dry_run(*variables: str) -> subprocess.CompletedProcess:
        return subprocess.run(["make", "-n", "data-restore", *variables], cwd=ROOT, text=True, capture_output=True)

    tag = tag_name("2000-01-01")  # make only passes it on: any tag name does
    assert "src.tools.data_version restore main" in dry_run("REF=main").stdout
    assert f"src.tools.data_version restore {tag}" in dry_run(f"TAG={tag}").stdout
    missing = dry_run()
    assert missing.returncode != 0 and "REF is missing" in missing.stderr


@pytest.mark.long
def test_cut_leaves_branch_head_params_and_outputs_alone(versions):
    root = versions.root
    assert versions.before["branch"], "the clone should be on a branch"
    assert versions.before["outputs"] and "missing" not in versions.before["outputs"].values()
    for tag in versions.tags:
        assert versions.after[tag] == versions.before, f"cutting {tag} changed the checkout"
        # Built on the branch's commit, yet on no branch: the tag is its only ref.
        assert git(["rev-parse", f"{tag}^{{commit}}^"], root) == versions.before["HEAD"]
        assert git(["branch", "--contains", tag], root) == ""
    assert f"as_of: '{versions.when.branch}'" in (root / "params.yaml").read_text(encoding="utf-8")


@pytest.mark.long
def test_cut_commits_tags_and_pushes(versions):
    root = versions.root
    for tag in versions.tags:
        assert git(["cat-file", "-t", tag], root) == "tag"  # annotated
        committed = set(git(["show", "--name-only", "--format=", tag], root).splitlines())
        assert {"params.yaml", "dvc.lock"} <= committed
        # Every output kept in git (the manifest, the metrics) is committed as the tag's
        # dvc.lock records it. Which of them the commit changes depends on the data: a
        # history ingested once a year gives the branch and an early tag the same model.
        assert committed_outputs_differing(root, tag) == []
    assert f"as_of: '{versions.when.older}'" in git(["show", f"{versions.when.older_tag}:params.yaml"], root)
    # The tags were made after the pushes: the remote holds the data of every tag (and of the branch).
    assert "in sync" in run(["dvc", "status", "--cloud", "--all-tags"], root).stdout


@pytest.mark.long
def test_restore_each_version_from_remote_then_the_branch(versions):
    root = versions.root
    for tag in versions.tags:
        drop_local_data(root)  # from the remote, not from what the cut left in the cache
        data_version(root, "restore", tag)
        assert git(["rev-parse", "HEAD"], root) == git(["rev-parse", f"{tag}^{{commit}}"], root)
        assert git(["branch", "--show-current"], root) == ""  # detached: the branch stays where it was
        assert differing_outputs(root, tag) == []
        assert UP_TO_DATE in run(["dvc", "status"], root).stdout
        repro = run(["dvc", "repro"], root).stdout
        assert "Running stage" not in repro and UP_TO_DATE in repro
    drop_local_data(root)
    data_version(root, "restore", versions.branch)
    assert state(root) == versions.before


@pytest.mark.long
def test_restore_uses_the_cache_before_the_remote(versions):
    root = versions.root
    newer_tag = versions.when.newer_tag
    data_version(root, "restore", newer_tag)  # its data comes into the cache, the branch's is there
    data_version(root, "restore", versions.branch)
    # Nothing listens on port 1: `dvc pull` fails on this remote even with every byte in the cache.
    run(["dvc", "remote", "modify", "--local", "storage", "url", "ssh://127.0.0.1:1/nowhere"], root)
    try:
        # With the remote out of reach, both ways still work: every byte is in the cache.
        data_version(root, "restore", newer_tag)
        assert differing_outputs(root, newer_tag) == []
        data_version(root, "restore", versions.branch)
        assert state(root) == versions.before
    finally:
        run(["dvc", "remote", "modify", "--local", "storage", "url", str(versions.remote)], root)


@pytest.mark.long
def test_rebuild_from_source_at_tag_gives_same_hashes(versions):
    root = versions.root
    checkout(root, versions.when.older_tag)
    drop_local_data(root)  # nothing to restore from: every byte comes from the source
    run(["dvc", "repro", "--force"], root)
    assert differing_outputs(root, versions.when.older_tag) == []
    assert git(["status", "--porcelain", "--untracked-files=no"], root) == "", "dvc.lock or a tracked output changed"


@pytest.mark.long
def test_params_and_metrics_diff_between_versions(versions):
    root = versions.root
    when = versions.when
    params = json.loads(run(["dvc", "params", "diff", when.older_tag, when.newer_tag, "--json"], root).stdout)
    assert params["params.yaml"]["gather.as_of"] == {"old": when.older, "new": when.newer}
    metrics = json.loads(run(["dvc", "metrics", "diff", when.older_tag, when.newer_tag, "--json"], root).stdout)
    rows = metrics[str(config.FEATURIZE_SUMMARY.relative_to(config.ROOT))]["snapshot_rows"]
    assert rows["new"] > rows["old"]


@pytest.mark.long
def test_gc_with_all_tags_keeps_every_version(versions):
    root = versions.root
    data_version(root, "restore", versions.branch)
    run(["dvc", "gc", "--workspace", "--all-tags", "--all-commits", "--cloud", "--force"], root)
    for tag in versions.tags:
        drop_local_data(root)  # from the remote, not from what gc left in the cache
        data_version(root, "restore", tag)
        assert differing_outputs(root, tag) == []
        assert UP_TO_DATE in run(["dvc", "status"], root).stdout


@pytest.mark.long
def test_tag_missing_from_cache_and_remote_gives_clear_message(versions):
    root = versions.root
    data_version(root, "restore", versions.branch)
    # Without --all-tags, gc keeps only the workspace's data: a version whose snapshot and
    # model differ from the branch's is gone everywhere. The older one, unless its data is
    # the branch's (a history ingested once a year: the branch's as_of is in the same year).
    branch_lock = lockfile.read_dvc_lock(root / "dvc.lock")
    gone = next(
        tag
        for tag in versions.tags
        if all(
            lockfile.locked_md5(lockfile.parse_lock(git(["show", f"{tag}:dvc.lock"], root)), str(output))
            != lockfile.locked_md5(branch_lock, str(output))
            for output in (SNAPSHOT, MODEL)
        )
    )
    run(["dvc", "gc", "--workspace", "--cloud", "--force"], root)
    result = data_version(root, "restore", gone, check=False)
    assert result.returncode != 0
    message = result.stderr
    assert "Traceback" not in result.stdout + message
    assert f"data-version: error: {gone} is checked out" in message
    assert "neither in the local cache nor on remote 'storage'" in message
    for output in (SNAPSHOT, MODEL):
        assert str(output) in message
    assert "dvc repro --force" in message


@pytest.mark.long
def test_cut_at_the_branch_as_of_tags_the_branch_commit(versions):
    root = versions.root
    data_version(root, "restore", versions.branch)
    before = state(root)
    data_version(root, "cut", versions.when.branch)
    tag = tag_name(versions.when.branch)
    # A rebuild at the branch's own params gives its dvc.lock byte for byte: nothing to commit.
    assert git(["rev-parse", f"{tag}^{{commit}}"], root) == versions.before["HEAD"]
    assert state(root) == before


@pytest.mark.long
def test_cut_from_a_restored_version_leaves_it_checked_out(versions):
    root = versions.root
    data_version(root, "restore", versions.branch)
    when = versions.when
    checkout(root, when.newer_tag)
    before = state(root)
    data_version(root, "cut", when.third)
    tag = tag_name(when.third)
    assert state(root) == before  # still detached at the newer version, its files as they were
    assert git(["rev-parse", f"{tag}^{{commit}}^"], root) == git(["rev-parse", f"{when.newer_tag}^{{commit}}"], root)
    assert f"as_of: '{when.third}'" in git(["show", f"{tag}:params.yaml"], root)
    checkout(root, versions.branch)


@pytest.mark.long
def test_failing_repro_leaves_nothing_behind(versions, tmp_path: Path):
    root = versions.root
    checkout(root, versions.branch)
    before = state(root)
    # A source that cannot be opened: the gather stage fails inside the worktree.
    unbuilt = versions.when.unbuilt
    result = data_version(root, "cut", unbuilt, check=False, SOURCE_URL=f"sqlite:///{tmp_path / 'no' / 'db'}")
    assert result.returncode != 0
    # The stage's own error is above; the tool's last word is its message, not a traceback.
    last_line = result.stderr.splitlines()[-1]
    assert last_line.startswith(f"data-version: error: `dvc repro` failed at gather.as_of={unbuilt}")
    assert git(["tag", "--list", tag_name(unbuilt)], root) == ""
    assert state(root) == before


@pytest.mark.long
def test_bad_input_is_named(versions):
    root = versions.root
    checkout(root, versions.branch)

    def error(*args: str) -> str:
        result = data_version(root, *args, check=False)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        return result.stderr

    when = versions.when
    assert "as_of '2013-13-01' is neither a date" in error("cut", "2013-13-01")
    assert f"tag {when.newer_tag} already exists" in error("cut", when.newer)
    assert "no tag, branch or commit 'data/1999-01-01'" in error("restore", "data/1999-01-01")
    assert when.older_tag in error("restore", "data/1999-01-01")  # lists the versions there are
    (root / "params.yaml").write_text((root / "params.yaml").read_text() + "\n", encoding="utf-8")
    assert "uncommitted changes to tracked files" in error("cut", when.unbuilt)
    assert "uncommitted changes to tracked files" in error("restore", when.older_tag)
    assert git(["branch", "--show-current"], root) == versions.branch
    git(["checkout", "--", "params.yaml"], root)


@pytest.mark.slow
def test_a_remote_folder_that_does_not_exist_is_named_not_read_as_missing_data(tmp_path: Path):
    # A tiny DVC project whose one file is only on its remote, and the remote's folder is a typo.
    from src.tools.data_version import DataVersionError, missing_remote_folder, restore

    root = tmp_path / "project"
    root.mkdir()
    for command in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "t@example.com"],
        ["git", "config", "user.name", "t"],
        ["dvc", "init", "-q"],
        ["dvc", "remote", "add", "-d", "storage", "../no-such-storage"],
    ):
        run(command, root)
    (root / "data.txt").write_text("some data\n")
    run(["dvc", "add", "-q", "data.txt"], root)
    run(["git", "add", "--all"], root)
    run(["git", "commit", "-q", "-m", "data"], root)
    shutil.rmtree(root / ".dvc" / "cache")
    (root / "data.txt").unlink()
    assert "no-such-storage, which does not exist" in missing_remote_folder(root, None)
    with pytest.raises(DataVersionError) as error:
        restore("HEAD", root=root)
    message = str(error.value)
    assert f"the DVC remote 'storage' is the folder {tmp_path / 'no-such-storage'}, which does not exist" in message
    assert "dvc remote modify storage url" in message and "neither in the local cache nor on" not in message
    # The folder made (empty, as a fresh remote): now the data is what is missing, and that is what is said.
    (tmp_path / "no-such-storage").mkdir()
    assert missing_remote_folder(root, None) is None
    with pytest.raises(DataVersionError, match="neither in the local cache nor on remote 'storage'"):
        restore("HEAD", root=root)
