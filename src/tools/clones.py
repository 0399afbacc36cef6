"""Working clones of this repository, for `make verify`, `make bench` and the end-to-end tests.

A clone gets by symlink what git cannot give it: the git-ignored demo source
database and, where asked, a locked .venv. So a clone costs a `git clone`,
not a reinstall or a rebuild of the source.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from src.pipeline import config, files
from src.tools.git import git

SOURCE_SUBDIR = config.SOURCE_DIR.relative_to(config.ROOT)


def working_clone(
    destination: Path,
    rev: str | None = None,
    repo: Path = config.ROOT,
    source_dir: Path | None = config.SOURCE_DIR,
    venv: Path | None = None,
) -> Path:
    """Clone `repo` to `destination`, on its current branch or detached at `rev`.

    `source_dir` (a folder holding the source database) and `venv` are linked
    in when given. A git identity is set, so the clone can commit (data
    versions, recorded locks) without the machine's git configuration.
    A failing git command raises src.tools.git.GitError.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    git(["clone", "-q", "--no-hardlinks", str(repo), str(destination)], destination.parent)
    if rev is not None:
        git(["checkout", "-q", "--detach", rev], destination)
    for name, value in (("user.email", "clone@example.com"), ("user.name", "working clone")):
        git(["config", name, value], destination)
    if venv is not None:
        (destination / ".venv").symlink_to(Path(venv).resolve())
    if source_dir is not None:
        cache_tracked_history(link_source(Path(source_dir), destination), destination)
    return destination


def cache_tracked_history(database: Path, root: Path) -> None:
    """Put the linked history into the clone's DVC cache when the clone's pointer names its bytes.

    A fork's clone has the history's pointer but an empty cache, so DVC would
    report the file "not in cache", and a data-version restore or a queued
    experiment would look for it on the remote. A copy, never a link: DVC makes
    its cache files read-only, which through a hard link would reach the
    original history. A pointer that names other bytes (the checkout ingested
    since) is left as it is: DVC then reports the file changed, which it is.
    """
    pointer = root / f"{config.SOURCE_DB.relative_to(config.ROOT)}.dvc"
    if not pointer.is_file() or not database.exists():
        return
    recorded = yaml.safe_load(pointer.read_text(encoding="utf-8"))["outs"][0]["md5"]
    if files.file_digest(database, "md5") != recorded:
        return
    cached = root / ".dvc" / "cache" / "files" / "md5" / recorded[:2] / recorded[2:]
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(database, cached)


def link_source(source_dir: Path, root: Path) -> Path:
    """Link the source history of `source_dir` into the checkout at `root`; return the link.

    The whole folder when the checkout has none; when git brought the folder
    (a history tracked by DVC: its pointer file is committed there), only the
    database file, so the pointer stays the checkout's own.
    """
    target = root / SOURCE_SUBDIR
    if target.is_dir() and not target.is_symlink():
        target = target / config.SOURCE_DB.name
        source_dir = source_dir / config.SOURCE_DB.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(Path(source_dir).resolve())
    return target
