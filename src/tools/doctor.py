"""`make doctor`: is this the environment the pipeline was locked and trained in?

    python -m src.tools.doctor [--lock PATH] [--manifest PATH] [--json]

A changed `dvc.lock` is most often a changed environment, not changed code:
pandas and pyarrow write their versions into Parquet footers, pickles carry
the scikit-learn version, and numerics move with numpy/scipy releases. This
compares

- the running Python with the version `requirements.lock` was compiled for,
- every installed distribution with the version the lock pins (and names
  packages the lock pins but that are missing, or installed but not pinned),
- the venv's stamp (`.installed-from-lock`, a copy of the lock the venv was
  installed from, written by the Makefile) with the lock,
- the versions recorded in the model manifest at training time with the
  running ones (src/pipeline/artifact.py's own check, reused).

It names every mismatch and exits 1 if there is any. `make verify` runs it
first, in the environment it rebuilds with.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

from src.pipeline import artifact, config
from src.tools.lock_summary import read_pins

LOCK = config.ROOT / "requirements.lock"
# The Makefile's $(STAMP), inside whichever venv is running.
STAMP_NAME = ".installed-from-lock"
# `python -m venv` installs these itself; they are not part of the lock.
VENV_TOOLS = frozenset({"pip", "setuptools", "wheel"})
# What to do with a package installed by hand that the pipeline should keep.
ADD_TO_LOCK = (
    "to keep it, add it to requirements.in, run `make lock`, and commit requirements.in and "
    "requirements.lock (and requirements-serving.lock if `make lock` changed it)"
)


@dataclass
class Report:
    python: str
    executable: str
    mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def installed_versions() -> dict[str, str]:
    """Canonical name -> version of every distribution the running Python sees."""
    return {canonicalize_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}


def package_mismatches(locked: dict[str, str], installed: dict[str, str]) -> list[str]:
    """One line per package whose installed version is not the locked one."""
    problems = []
    for name in sorted(set(locked) | set(installed)):
        pinned, present = locked.get(name), installed.get(name)
        if pinned == present or (pinned is None and name in VENV_TOOLS):
            continue
        if present is None:
            problems.append(f"{name}: requirements.lock pins {pinned}, not installed")
        elif pinned is None:
            problems.append(f"{name}: installed {present}, not in requirements.lock; {ADD_TO_LOCK}")
        else:
            problems.append(f"{name}: requirements.lock pins {pinned}, installed {present}")
    return problems


def python_mismatches(locked_python: str | None, running: str) -> list[str]:
    """The lock's target Python (e.g. 3.11) must prefix the running version (e.g. 3.11.7)."""
    if locked_python is None or running == locked_python or running.startswith(locked_python + "."):
        return []
    return [f"python: requirements.lock was compiled for {locked_python}, running {running}"]


def check(
    lock_path: Path = LOCK,
    manifest_path: Path | None = config.MANIFEST,
    installed: dict[str, str] | None = None,
    running_python: str | None = None,
) -> Report:
    """Compare the running environment with the lock and the manifest."""
    running_python = running_python or platform.python_version()
    installed = installed_versions() if installed is None else installed
    report = Report(python=running_python, executable=sys.executable)
    try:
        lock_text = Path(lock_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        report.mismatches.append(f"requirements lock {lock_path} not found")
        return report
    locked = read_pins(lock_text)
    if not locked.packages:
        report.mismatches.append(f"{lock_path} pins no packages (expected `name==version` lines)")
    report.mismatches += python_mismatches(locked.python, running_python)
    report.mismatches += package_mismatches(locked.packages, installed)

    stamp = Path(sys.prefix) / STAMP_NAME
    if sys.prefix == sys.base_prefix:
        report.notes.append(f"not running in a venv ({sys.executable}); `make setup` creates .venv")
    elif not stamp.is_file():
        report.notes.append(f"{stamp} missing: this venv was not installed by `make setup`")
    elif stamp.read_text(encoding="utf-8") != lock_text:
        report.mismatches.append(
            f"venv: {sys.prefix} was installed from another requirements.lock than {lock_path} (run `make setup`)"
        )

    if manifest_path is not None:
        try:
            recorded = artifact.read_manifest(manifest_path)["versions"]
        except artifact.ArtifactError as error:
            report.notes.append(f"model versions not checked: {error}")
        else:
            # Reuse the loader's own check, fed the versions seen here.
            running = {name: installed.get(canonicalize_name(name), "not installed") for name in recorded}
            running["python"] = running_python
            report.mismatches += [f"manifest: {line}" for line in artifact.version_mismatches(recorded, running)]
    return report


def format_report(report: Report) -> str:
    lines = [f"doctor: Python {report.python} at {report.executable}"]
    lines += [f"  note: {note}" for note in report.notes]
    if report.ok:
        lines.append("doctor: OK, the environment matches requirements.lock and the model manifest")
    else:
        lines.append(f"doctor: {len(report.mismatches)} mismatch(es), the commonest cause of a changed dvc.lock:")
        lines += [f"  {line}" for line in report.mismatches]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.tools.doctor", description=__doc__.split("\n")[0])
    parser.add_argument("--lock", type=Path, default=LOCK, help="requirements lock (default: %(default)s)")
    parser.add_argument("--manifest", type=Path, default=config.MANIFEST, help="model manifest (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = check(args.lock, args.manifest)
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2, sort_keys=True))
    else:
        print(format_report(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
