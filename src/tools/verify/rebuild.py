"""Rebuild a commit in a fresh temporary clone, under a given environment.

A clone gets the commit's files and nothing else: no outputs, no DVC cache,
no run-cache, so `dvc repro --force` must recompute every output. It reuses
the checkout's .venv only when that venv was installed from the very same
requirements.lock (the Makefile's stamp is a copy of it); otherwise it builds
one with the commit's own `make setup`. The demo source database is linked
from the checkout (src/tools/clones.py).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from src.pipeline import config
from src.tools import clones
from src.tools.doctor import STAMP_NAME
from src.tools.git import GitError, git
from src.tools.venv import venv_env

# The pipeline's own thread setting, and the libraries' for code outside its limits.
THREAD_VARIABLES = (config.THREADS_ENV, "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Thread counts to rebuild with, besides the default (every usable core): 4 is
# more than a small machine has, standing in for a bigger one.
THREAD_COUNTS = (1, 2, 4)
# Far from UTC, with a half-hour offset and daylight saving: shifts any local-time leak.
OTHER_TZ = "Australia/Adelaide"
# Preferred other locales, most disruptive first (de_DE writes 1,5 for 1.5).
LOCALES = ("de_DE.UTF-8", "en_US.UTF-8", "C.UTF-8", "POSIX")


class VerifyError(RuntimeError):
    """The rebuild could not be set up; the message says what to do."""


@dataclass(frozen=True)
class Variant:
    """One environment to rebuild in: extra variables, and optionally another clone path."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    elsewhere: bool = False  # clone under a different, deeper absolute path

    def describe(self) -> str:
        parts = [f"{key}={value}" for key, value in sorted(self.env.items())]
        return ", ".join(parts + (["another clone path"] if self.elsewhere else [])) or "the current environment"


def available_locales() -> list[str]:
    try:
        return subprocess.run(["locale", "-a"], capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return []


def _same_locale(name: str) -> str:
    # `C.UTF-8` and `C.utf8` are one locale (`locale -a` lists the latter).
    return name.lower().replace("-", "")


def other_locale(current: str | None, available: list[str]) -> str:
    """The first preferred locale that is installed and not the current one."""
    installed = {_same_locale(name) for name in available}
    for name in LOCALES:
        if _same_locale(name) in installed and _same_locale(name) != _same_locale(current or "C"):
            return name
    return "POSIX" if _same_locale(current or "C") != "posix" else "C.UTF-8"


def variants(vary: bool, seed: int | None = None) -> list[Variant]:
    """The default rebuild, then (with `vary`) one variant per perturbation."""
    runs = [Variant("default")]
    if not vary:
        return runs
    hash_seed = str(random.Random(seed).randint(1, 2**32 - 1))
    current_locale = os.environ.get("LC_ALL") or os.environ.get("LANG")
    runs += [Variant(f"threads-{n}", {name: str(n) for name in THREAD_VARIABLES}) for n in THREAD_COUNTS]
    runs += [
        Variant("hashseed", {"PYTHONHASHSEED": hash_seed}),
        Variant("tz-locale", {"TZ": OTHER_TZ, "LC_ALL": other_locale(current_locale, available_locales())}),
        Variant("path", elsewhere=True),
        Variant("scramble", {config.SCRAMBLE_ENV: "1"}),
    ]
    return runs


def resolve(repo: Path, rev: str) -> str:
    """The full commit id of `rev`; a bad name is an error that names it."""
    try:
        return git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], repo)
    except GitError:
        raise VerifyError(f"{rev!r} is not a commit or tag in {repo}") from None


def make_clone(repo: Path, commit: str, destination: Path) -> Path:
    """A clone detached at `commit`, with the checkout's git-ignored demo source linked in."""
    source = repo / clones.SOURCE_SUBDIR
    try:
        return clones.working_clone(destination, commit, repo=repo, source_dir=source if source.is_dir() else None)
    except GitError as error:
        raise VerifyError(str(error)) from None


def venv_reusable(stamp: Path, lock: Path) -> bool:
    """Reuse a venv only if it was installed from exactly this lock (byte for byte)."""
    return stamp.is_file() and lock.is_file() and stamp.read_bytes() == lock.read_bytes()


def prepare_venv(repo: Path, clone: Path, built: Path) -> tuple[Path, str]:
    """The venv to rebuild with, and how it was chosen.

    `built` is where a fresh venv goes if the checkout's cannot be reused; it
    is kept outside the clone so that every variant of one verify shares it.
    """
    lock = clone / "requirements.lock"
    if not lock.is_file():
        raise VerifyError("the commit has no requirements.lock: nothing defines its environment")
    existing = (repo / ".venv").resolve()
    if venv_reusable(existing / STAMP_NAME, lock):
        return existing, f"reused {existing} (installed from the identical requirements.lock)"
    if venv_reusable(built / STAMP_NAME, lock):
        return built, f"reused {built} (built earlier in this run)"
    if not (clone / "Makefile").is_file():
        raise VerifyError(
            "the checkout's .venv was installed from another requirements.lock and the commit "
            "has no Makefile to build one"
        )
    # The commit's own recipe (venv + hash-checked install + stamp), pointed at `built`.
    result = subprocess.run(["make", "setup", f"VENV={built}"], cwd=clone, capture_output=True, text=True)
    if result.returncode != 0:
        raise VerifyError(
            f"`make setup` failed for the commit's requirements.lock:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return built, f"built {built} from the commit's requirements.lock (the checkout's .venv differs)"


def repro(clone: Path, venv: Path, variant: Variant, targets: list[str], log: Path) -> int:
    """`dvc repro --force` in the clone; its output goes to `log`. Returns the exit status.

    The stages get the caller's environment, so a source named by the caller's
    SOURCE_URL (config.SOURCE_URL_ENV) is the one the rebuild reads.
    """
    with open(log, "w", encoding="utf-8") as handle:
        result = subprocess.run(
            [str(venv / "bin" / "dvc"), "repro", "--force", *targets],
            cwd=clone,
            env=venv_env(venv, **variant.env),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    return result.returncode


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
