"""The one way the tools run git: its output, or a GitError in git's own words.

Clones, data versions, verify and the end-to-end tests all call git; a
failure then always names the command, the folder and what git said.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path


class GitError(RuntimeError):
    """git exited non-zero: `command`, `cwd`, `returncode` and `stderr` (what git said)."""

    def __init__(self, args: Sequence[str], cwd: Path, returncode: int, stderr: str):
        self.command, self.cwd, self.returncode, self.stderr = ["git", *args], Path(cwd), returncode, stderr.strip()
        super().__init__(f"{' '.join(self.command)} failed in {cwd}: {self.stderr or f'exit {returncode}'}")


def git_bytes(args: Sequence[str], cwd: Path) -> bytes:
    """git's stdout, untouched: for file contents (`git show REV:PATH` of a binary output)."""
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True)
    if result.returncode != 0:
        raise GitError(args, cwd, result.returncode, result.stderr.decode(errors="replace"))
    return result.stdout


def git(args: Sequence[str], cwd: Path) -> str:
    """git's stdout as text without the trailing newline (a ref, a listing, a status)."""
    return git_bytes(args, cwd).decode().rstrip("\n")


def git_succeeds(args: Sequence[str], cwd: Path) -> bool:
    """Whether git exits 0, for commands whose exit status is the answer (`rev-parse --verify --quiet`)."""
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True).returncode == 0
