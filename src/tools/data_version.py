"""Data versions as git tags: `make data-version AS_OF=...` and `make data-restore REF=...`.

A data version is an annotated tag `data/<as_of>` on a commit whose params.yaml
sets `gather.as_of` and whose dvc.lock hashes everything built from that
snapshot: features, model, metrics, predictions. The large files live in the
DVC cache and remote, the small ones (manifest, metrics) in git.

`cut` never moves the current branch. It builds the version in a temporary git
worktree detached at HEAD, which shares this checkout's DVC cache, remotes,
source and venv: there it sets `gather.as_of` (keeping params.yaml's comments),
runs `dvc repro`, commits params.yaml, dvc.lock and the git-tracked outputs,
pushes the data to the DVC remote and only then tags, so a tag never points at
data that exists only on one machine. The tag is the only ref to that commit;
the branch, its params.yaml and its workspace stay as they were.

`restore` checks out a data-version tag, a branch or any commit and brings the
data its dvc.lock records into the workspace: from the local cache, else from
the remote. When the bytes are in neither, it names the missing outputs and how
to rebuild them, instead of leaving DVC's checkout error to decode.
It never pushes to a git remote: publishing a tag (`git push origin <tag>`) is
the user's decision.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ruamel.yaml.scalarstring import SingleQuotedScalarString

from src.pipeline import config
from src.pipeline.params import ParamsError, update_params
from src.pipeline.source.moments import as_of_timestamp
from src.tools.clones import SOURCE_SUBDIR, link_source
from src.tools.git import GitError, git, git_succeeds
from src.tools.venv import venv_env

TAG_PREFIX = "data/"
PARAMS_SUBPATH = config.PARAMS_FILE.relative_to(config.ROOT)
VENV_SUBDIR = config.VENV.relative_to(config.ROOT)
# A cut's temporary worktree is a folder with this prefix under .dvc/tmp.
WORKTREE_PREFIX = "data-version-"


class DataVersionError(RuntimeError):
    """A data version cannot be cut or restored; the message says why and what to do."""


def tag_name(as_of: str) -> str:
    """`data/2013-06-30` for a date; a timestamp loses its colons (not allowed in git refs)."""
    as_of_timestamp(as_of)  # raises ValueError naming the accepted formats
    return TAG_PREFIX + as_of.replace(":", "")


def set_as_of(params_path: Path, as_of: str) -> bool:
    """Set `gather.as_of` in params_path in place, keeping comments; return True if it changed."""

    def change(document) -> None:
        gather = document.get("gather") if document else None
        if gather is None or "as_of" not in gather:
            raise ParamsError(f"{params_path} has no `gather.as_of` to set")
        # Quoted: unquoted, a YAML 1.1 reader (PyYAML) would read a date, not a string.
        if gather["as_of"] != as_of:
            gather["as_of"] = SingleQuotedScalarString(as_of)

    return update_params(params_path, change)


def _dvc(root: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    # Stage commands run `python`: make it this interpreter's (the venv's), as `make` does.
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        env=venv_env(Path(sys.prefix)),
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
    )


def _require_clean(root: Path) -> None:
    """A tag must describe committed code: dvc.lock hashes the code that built the outputs."""
    dirty = git(["status", "--porcelain", "--untracked-files=no"], root)
    if dirty:
        raise DataVersionError("uncommitted changes to tracked files; commit or discard them first:\n" + dirty)


def _tag_exists(root: Path, tag: str) -> bool:
    return git_succeeds(["rev-parse", "--verify", "--quiet", f"refs/tags/{tag}"], root)


def _branch(root: Path) -> str | None:
    """The checked-out branch, or None on a detached HEAD."""
    return git(["branch", "--show-current"], root) or None


def _head_description(root: Path) -> str:
    short = git(["rev-parse", "--short", "HEAD"], root)
    branch = _branch(root)
    return f"{branch} at {short}" if branch else f"detached HEAD {short}"


def data_tags(root: Path) -> list[str]:
    listing = git(["tag", "--list", f"{TAG_PREFIX}*"], root)
    return sorted(listing.split()) if listing else []


def git_tracked_outputs(root: Path) -> list[str]:
    """Outputs that DVC hashes but git stores (`cache: false`: manifest, metrics)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return sorted(str(Path(out.fs_path).relative_to(root)) for out in repo.index.outs if not out.use_cache)


def _remote_description(root: Path, remote: str | None) -> str:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        name = remote or repo.config["core"].get("remote")
        if not name:
            return "no remote (none is configured as default)"
        url = repo.config["remote"].get(name, {}).get("url", "?")
    return f"remote {name!r} ({url})"


def missing_remote_folder(root: Path, remote: str | None) -> str | None:
    """What is wrong when the remote is a local folder that does not exist (a typo, a drive not mounted), else None.

    DVC reads such a remote as an empty one, so a pull reports the data as
    missing from it; the folder is what is missing.
    """
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        name = remote or repo.config["core"].get("remote")
        if not name or name not in repo.config["remote"]:
            return None
        store = repo.cloud.get_remote(name)
        if store.fs.protocol != "local" or Path(store.path).is_dir():
            return None
    return (
        f"the DVC remote {name!r} is the folder {store.path}, which does not exist: check its URL "
        f"(`dvc remote list`; fix it with `dvc remote modify {name} url <folder>`) or mount the drive"
    )


def _remote_args(remote: str | None) -> list[str]:
    return ["--remote", remote] if remote else []


def _share_dvc_setup(root: Path, tree: Path) -> str:
    """Make the worktree's DVC use this checkout's cache and remotes; return its site cache folder.

    The worktree has the committed .dvc/config but not the git-ignored
    config.local, and a relative path in either would resolve from the
    worktree's folder, so a push could land somewhere else than this
    checkout's remote. It gets this checkout's local settings, every remote
    URL as resolved here, and this checkout's cache, which keeps the version's
    data when the worktree is gone.
    """
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        local = repo.config.load_one("local")
        urls = {name: settings["url"] for name, settings in repo.config["remote"].items()}
        cache_dir = str(Path(repo.cache.local_cache_dir).resolve())
    with Repo(str(tree)) as repo:
        with repo.config.edit("local") as settings:
            settings.update(local)
            for name, url in urls.items():
                settings["remote"].setdefault(name, {})["url"] = url
            settings["cache"]["dir"] = cache_dir
        return repo.site_cache_dir


@contextmanager
def _worktree(root: Path) -> Iterator[Path]:
    """A temporary worktree detached at HEAD, ready to run the pipeline; removed afterwards, failed or not."""
    # Under .dvc/tmp (git-ignored; DVC keeps its own temporary workspaces there): on the
    # cache's filesystem, so outputs move into the cache instead of being copied across devices.
    parent = root / ".dvc" / "tmp"
    parent.mkdir(parents=True, exist_ok=True)
    tree = Path(tempfile.mkdtemp(prefix=WORKTREE_PREFIX, dir=parent))
    links: list[Path] = []
    site_cache_dir = None
    try:
        # Without checkout, then reset: `git worktree add` runs the post-checkout hook, and
        # DVC's (`dvc install`) would check out outputs before the worktree shares the cache.
        git(["worktree", "add", "--quiet", "--detach", "--no-checkout", str(tree), "HEAD"], root)
        git(["reset", "--quiet", "--hard"], tree)
        # Git-ignored, so not in the worktree: the source the gather stage reads, and the venv.
        if (root / SOURCE_SUBDIR / config.SOURCE_DB.name).exists():
            links.append(link_source(root / SOURCE_SUBDIR, tree))
        if (root / VENV_SUBDIR).exists():
            link = tree / VENV_SUBDIR
            link.symlink_to((root / VENV_SUBDIR).resolve())
            links.append(link)
        site_cache_dir = _share_dvc_setup(root, tree)
        yield tree
    finally:
        # Links first: removing the folder must never reach into the real source or venv.
        for link in links:
            link.unlink(missing_ok=True)
        git_succeeds(["worktree", "remove", "--force", str(tree)], root)
        shutil.rmtree(tree, ignore_errors=True)
        git_succeeds(["worktree", "prune"], root)
        if site_cache_dir:  # DVC's index of the worktree, keyed by its path: nothing will read it again
            shutil.rmtree(site_cache_dir, ignore_errors=True)


def _refuse_existing_tag(root: Path, tag: str) -> None:
    """A data version is cut once: an existing tag is restored or deleted, never moved."""
    if _tag_exists(root, tag):
        commit = git(["rev-parse", "--short", tag + "^{commit}"], root)
        raise DataVersionError(
            f"tag {tag} already exists (commit {commit}); "
            f"restore it with `make data-restore REF={tag}`, or delete it with `git tag -d {tag}`"
        )


def _commit_snapshot(tree: Path, tag: str, as_of: str, base: str) -> str:
    """Commit params.yaml, dvc.lock and the git-stored outputs in the worktree (if any changed); the commit's id."""
    paths = [str(PARAMS_SUBPATH), "dvc.lock", *git_tracked_outputs(tree)]
    git(["add", "--all", "--", *paths], tree)
    if not git_succeeds(["diff", "--cached", "--quiet"], tree):  # exit 1: something is staged
        git(
            [
                "commit",
                "--quiet",
                "-m",
                f"Data version {tag}: snapshot as of {as_of}\n\n"
                f"Built beside {base}; the tag, not a branch, holds this commit.",
                "--",
                *paths,
            ],
            tree,
        )
    return git(["rev-parse", "HEAD"], tree)


def _create_tag(root: Path, tag: str, as_of: str, commit: str) -> None:
    """The annotated tag on the snapshot's commit; its message says how to restore and rebuild it."""
    git(
        [
            "tag",
            "-a",
            tag,
            "-m",
            f"Data version: snapshot as of {as_of} (gather.as_of)\n\n"
            f"Restore: make data-restore REF={tag} (or: git checkout {tag} && dvc pull)\n"
            f"Rebuild from the source: git checkout {tag} && dvc repro --force",
            commit,
        ],
        root,
    )


def cut(as_of: str, root: Path = config.ROOT, remote: str | None = None, push: bool = True) -> str:
    """Reproduce the pipeline at `as_of` beside the current branch, commit, push the data, tag; return the tag."""
    tag = tag_name(as_of)
    _refuse_existing_tag(root, tag)
    # The worktree starts from HEAD's commit: uncommitted edits would not be in the version.
    _require_clean(root)
    base = _head_description(root)
    with _worktree(root) as tree:
        set_as_of(tree / PARAMS_SUBPATH, as_of)
        if _dvc(tree, "repro").returncode != 0:
            raise DataVersionError(
                f"`dvc repro` failed at gather.as_of={as_of} (see above); nothing was committed "
                f"or tagged, and {base} is as it was"
            )
        commit = _commit_snapshot(tree, tag, as_of, base)
        where = _remote_description(tree, remote)
        # Push before tagging: a tag should never name data that exists on this machine only.
        if push and _dvc(tree, "push", *_remote_args(remote)).returncode != 0:
            raise DataVersionError(
                f"`dvc push` to {where} failed, so {tag} was not created; fix the remote and "
                f"run `make data-version AS_OF={as_of}` again (the run-cache makes it quick)"
            )
    _create_tag(root, tag, as_of, commit)
    pushed = f"data pushed to {where}" if push else "data NOT pushed (--no-push)"
    print(
        f"data-version: tagged {tag} at {commit[:7]}; {pushed}; {base} is unchanged.\n"
        f"Work on it with `make data-restore REF={tag}`; publish it with `git push origin {tag}`."
    )
    return tag


def _not_in_cache(root: Path) -> list[str]:
    status = _dvc(root, "data", "status", "--json", capture=True)
    return sorted(json.loads(status.stdout or "{}").get("not_in_cache", [])) if status.returncode == 0 else []


def restore(ref: str, root: Path = config.ROOT, remote: str | None = None) -> None:
    """Check out `ref` (a data-version tag, a branch, any commit) and bring in exactly the data its dvc.lock records."""
    if ref.startswith("-") or not git_succeeds(["rev-parse", "--verify", "--quiet", ref + "^{commit}"], root):
        known = ", ".join(data_tags(root)) or "none"
        raise DataVersionError(
            f"no tag, branch or commit {ref!r} in this repository (data versions: {known}); "
            f"fetch tags with `git fetch --tags`"
        )
    _require_clean(root)
    previous = _branch(root)
    on_branch = git_succeeds(["show-ref", "--verify", "--quiet", f"refs/heads/{ref}"], root)
    # A branch is checked out as itself, so new commits go on it; anything else detached.
    git(["checkout", "--quiet", *([] if on_branch else ["--detach"]), ref], root)
    # The cache first: going back to a branch, or to a version cut here, needs no remote.
    # A checkout can succeed with data missing from the cache: a file already in the
    # workspace with the recorded bytes (a fork's DVC-tracked history, an output
    # rebuilt after the cache was cleared). Those are fetched too, so the cache holds
    # every byte the ref records, as after a pull.
    pulled = _dvc(root, "checkout", capture=True).returncode == 0 and not _not_in_cache(root)
    pulled = pulled or _dvc(root, "pull", *_remote_args(remote)).returncode == 0
    missing = _not_in_cache(root)
    if not pulled or missing:
        folder = missing_remote_folder(root, remote)
        if folder:
            raise DataVersionError(
                f"{ref} is checked out, but some of its data is not in the local cache, and "
                f"{folder}; then run `make data-restore REF={ref}` again"
            )
        listing = "\n".join(f"  {path}" for path in missing) or "  (see dvc's message above)"
        raise DataVersionError(
            f"{ref} is checked out, but some of its data is neither in the local cache nor on "
            f"{_remote_description(root, remote)}:\n{listing}\n"
            f"Rebuild it from the source (the point-in-time gather makes the same bytes): `dvc repro --force`; "
            f"or push it from a machine that has it."
        )
    if on_branch:
        print(f"data-version: on branch {ref}: every output matches its dvc.lock.")
    else:
        back = f"`make data-restore REF={previous}`" if previous else "`make data-restore REF=<branch>`"
        print(
            f"data-version: restored {ref} (detached HEAD): every output matches its dvc.lock; "
            f"back to a branch: {back}."
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.tools.data_version", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cut_parser = commands.add_parser(
        "cut", help="reproduce at AS_OF in a temporary worktree, commit there, push the data, tag data/AS_OF"
    )
    cut_parser.add_argument("as_of", help="gather.as_of: YYYY-MM-DD (end of that day, UTC) or YYYY-MM-DDTHH:MM:SSZ")
    cut_parser.add_argument("--no-push", action="store_true", help="tag without pushing the data")
    cut_parser.add_argument("-r", "--remote", help="DVC remote to push to (default: the configured default)")
    restore_parser = commands.add_parser("restore", help="check out REF and bring its data into the workspace")
    restore_parser.add_argument("ref", help="a data-version tag (data/2013-06-30), a branch (main) or any commit")
    restore_parser.add_argument("-r", "--remote", help="DVC remote to pull from (default: the configured default)")
    args = parser.parse_args(argv)
    if args.command == "cut":
        cut(args.as_of, remote=args.remote, push=not args.no_push)
    else:
        restore(args.ref, remote=args.remote)


if __name__ == "__main__":
    try:
        main()
    except (DataVersionError, GitError, ParamsError, ValueError) as error:
        sys.exit(f"data-version: error: {error}")
