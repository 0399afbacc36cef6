"""Data versions as git tags: `make data-version AS_OF=...` and `make data-restore TAG=...`.

A data version is an annotated tag `data/<as_of>` on a commit whose params.yaml
sets `gather.as_of` and whose dvc.lock hashes everything built from that
snapshot: features, model, metrics, predictions. The large files live in the
DVC cache and remote, the small ones (manifest, metrics) in git.

`cut` sets `gather.as_of` (keeping params.yaml's comments), runs `dvc repro`,
commits params.yaml, dvc.lock and the git-tracked outputs, pushes the data to
the DVC remote and only then tags, so a tag never points at data that exists
only on one machine. `restore` checks a tag out and pulls its data; when the
bytes are neither in the cache nor on the remote it names the missing outputs
and how to rebuild them, instead of leaving DVC's checkout error to decode.
It never pushes to a git remote: publishing a tag (`git push origin <tag>`) is
the user's decision.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from ruamel.yaml.scalarstring import SingleQuotedScalarString

from src.pipeline import config, files
from src.pipeline.params import ParamsError, as_of_timestamp, update_params
from src.tools.git import GitError, git, git_succeeds
from src.tools.venv import venv_env

TAG_PREFIX = "data/"


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
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=venv_env(Path(sys.prefix)), text=True,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)


def _require_clean(root: Path) -> None:
    """A tag must describe committed code: dvc.lock hashes the code that built the outputs."""
    dirty = git(["status", "--porcelain", "--untracked-files=no"], root)
    if dirty:
        raise DataVersionError("uncommitted changes to tracked files; commit or discard them first:\n" + dirty)


def _tag_exists(root: Path, tag: str) -> bool:
    return git_succeeds(["rev-parse", "--verify", "--quiet", f"refs/tags/{tag}"], root)


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


def _remote_args(remote: str | None) -> list[str]:
    return ["--remote", remote] if remote else []


def cut(as_of: str, root: Path = config.ROOT, remote: str | None = None, push: bool = True) -> str:
    """Reproduce the pipeline at `as_of`, commit, push the data, tag; return the tag."""
    tag = tag_name(as_of)
    if _tag_exists(root, tag):
        raise DataVersionError(f"tag {tag} already exists (commit {git(['rev-parse', '--short', tag + '^{commit}'], root)}); "
                               f"restore it with `make data-restore TAG={tag}`, or delete it with `git tag -d {tag}`")
    if not git_succeeds(["symbolic-ref", "-q", "HEAD"], root):
        raise DataVersionError("HEAD is detached (a restored data version?): check out a branch first, e.g. `git checkout main`")
    _require_clean(root)
    params_path = root / config.PARAMS_FILE.relative_to(config.ROOT)
    original = params_path.read_bytes()
    set_as_of(params_path, as_of)
    if _dvc(root, "repro").returncode != 0:
        with files.atomic_open(params_path, "wb") as handle:
            handle.write(original)
        raise DataVersionError(f"`dvc repro` failed at gather.as_of={as_of} (see above); params.yaml is back as it was")
    paths = ["params.yaml", "dvc.lock", *git_tracked_outputs(root)]
    git(["add", "--all", "--", *paths], root)
    if not git_succeeds(["diff", "--cached", "--quiet"], root):  # exit 1: something is staged
        git(["commit", "-q", "-m", f"Data version {tag}: snapshot as of {as_of}", "--", *paths], root)
    if push:
        # Push before tagging: a tag should never name data that exists on this machine only.
        if _dvc(root, "push", *_remote_args(remote)).returncode != 0:
            raise DataVersionError(
                f"committed, but `dvc push` to {_remote_description(root, remote)} failed, so {tag} was not "
                f"created; fix the remote and run `make data-version AS_OF={as_of}` again")
    git(["tag", "-a", tag, "-m",
         f"Data version: snapshot as of {as_of} (gather.as_of)\n\n"
         f"Restore: git checkout {tag} && dvc pull\nRebuild from the source: git checkout {tag} && dvc repro --force"],
        root)
    pushed = f"data pushed to {_remote_description(root, remote)}" if push else "data NOT pushed (--no-push)"
    print(f"data-version: tagged {tag} at {git(['rev-parse', '--short', 'HEAD'], root)}; {pushed}.\n"
          f"Publish the tag with `git push origin {tag}`.")
    return tag


def restore(tag: str, root: Path = config.ROOT, remote: str | None = None) -> None:
    """Check out `tag` and pull exactly the data its dvc.lock records."""
    if not _tag_exists(root, tag):
        known = ", ".join(data_tags(root)) or "none"
        raise DataVersionError(f"no tag {tag!r} in this repository (data versions: {known}); "
                               f"fetch tags with `git fetch --tags`")
    _require_clean(root)
    git(["checkout", "-q", tag], root)
    pulled = _dvc(root, "pull", *_remote_args(remote))
    status = _dvc(root, "data", "status", "--json", capture=True)
    missing = sorted(json.loads(status.stdout or "{}").get("not_in_cache", [])) if status.returncode == 0 else []
    if pulled.returncode != 0 or missing:
        listing = "\n".join(f"  {path}" for path in missing) or "  (see dvc's message above)"
        raise DataVersionError(
            f"{tag} is checked out, but some of its data is neither in the local cache nor on "
            f"{_remote_description(root, remote)}:\n{listing}\n"
            f"Rebuild it from the source (the point-in-time gather makes the same bytes): `dvc repro --force`; "
            f"or push it from a machine that has it.")
    print(f"data-version: restored {tag}: every output matches its dvc.lock "
          f"(back to a branch: `git checkout main`).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.tools.data_version", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cut_parser = commands.add_parser("cut", help="reproduce at AS_OF, commit, push the data, tag data/AS_OF")
    cut_parser.add_argument("as_of", help="gather.as_of: YYYY-MM-DD (end of that day, UTC) or YYYY-MM-DDTHH:MM:SSZ")
    cut_parser.add_argument("--no-push", action="store_true", help="tag without pushing the data")
    cut_parser.add_argument("-r", "--remote", help="DVC remote to push to (default: the configured default)")
    restore_parser = commands.add_parser("restore", help="check out TAG and pull its data")
    restore_parser.add_argument("tag", help="a data-version tag, e.g. data/2013-06-30")
    restore_parser.add_argument("-r", "--remote", help="DVC remote to pull from (default: the configured default)")
    args = parser.parse_args(argv)
    if args.command == "cut":
        cut(args.as_of, remote=args.remote, push=not args.no_push)
    else:
        restore(args.tag, remote=args.remote)


if __name__ == "__main__":
    try:
        main()
    except (DataVersionError, GitError, ParamsError, ValueError) as error:
        sys.exit(f"data-version: error: {error}")
