"""Helpers for the end-to-end tests of sweeps, data versions and remotes.

They read what a clone's dvc.lock records and compare the bytes on disk, so a
test can say "identical" in the strongest sense: every file of every output.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from src.pipeline import files, lockfile
from src.tools.git import git_succeeds


def lock_outputs(root: Path) -> list[str]:
    """Every output path that the clone's dvc.lock records, in stage order."""
    return lockfile.outputs(lockfile.read_dvc_lock(root / "dvc.lock"))


def _sha256(path: Path) -> str:
    return files.file_digest(path)


def output_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under every output in dvc.lock (a missing one maps to 'missing')."""
    hashes = {}
    for output in lock_outputs(root):
        path = root / output
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in found:
            hashes[str(file.relative_to(root))] = _sha256(file) if file.exists() else "missing"
    return hashes


def drop_local_data(root: Path) -> None:
    """Delete the DVC cache and every cached output: only git's files and the remote remain."""
    shutil.rmtree(root / ".dvc" / "cache", ignore_errors=True)
    for output in lock_outputs(root):
        # Cached outputs are the git-ignored ones (DVC adds them to .gitignore).
        if git_succeeds(["check-ignore", "-q", output], root):
            path = root / output
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
