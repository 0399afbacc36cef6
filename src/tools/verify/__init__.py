"""`make verify`: does a commit rebuild bit for bit?

    python -m src.tools.verify [--rev REV] [--vary | --variant NAME ...] [--target STAGE ...]

Checks the commit out into a fresh temporary clone, sets up its locked
environment (rebuild.py), runs the environment check (src/tools/doctor.py),
runs `dvc repro --force`, and compares the rebuilt dvc.lock with the committed
one, path by path (lockdiff.py). Every differing output is explained from its
committed version (the checkout's DVC cache, or git for outputs with
`cache: false`) and its rebuilt one (explain.py). `--vary` repeats the
rebuild under perturbed environments (threads, hash seed, time zone and locale,
clone path, SQLite row order), each a column of the same table.

The table is printed and written as JSON to REPORT (git-ignored); the exit
status is 0 only when every entry of every rebuild is identical.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from src.pipeline import config, files, lockfile
from src.pipeline.dataset import load_adapter
from src.pipeline.params import load_params
from src.tools.verify import explain, lockdiff, rebuild
from src.tools.verify.rebuild import Variant, VerifyError

# Git-ignored by reports/.gitignore. (Not in src/pipeline/config.py: that file
# is a dependency of the gather stage, so editing it would invalidate dvc.lock.)
REPORT = config.ROOT / "reports" / "verify.json"
LOCK_FILE = "dvc.lock"


@dataclass
class Run:
    """One rebuild: its environment, outcome and the compared entries."""

    name: str
    environment: str
    env: dict[str, str]
    clone: str
    status: int | None = None  # dvc repro's exit status
    seconds: float | None = None
    log_tail: str = ""
    entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.status == 0 and all(entry["identical"] for entry in self.entries)


class Committed:
    """The committed version of an output, read at the commit through DVC's own file system.

    `DVCFileSystem(repo, rev=commit)` serves what `git show` would for files
    committed to git (outputs with `cache: false`) and the DVC cache's object
    for the rest, by the commit's dvc.lock; `cache` only names where that is.
    """

    def __init__(self, repo: Path, commit: str, cache: Path):
        self.repo, self.commit, self.cache = repo, commit, cache
        self._fs = None

    @property
    def fs(self):
        if self._fs is None:
            from dvc.api import DVCFileSystem

            self._fs = DVCFileSystem(str(self.repo), rev=self.commit)
        return self._fs

    def _info(self, path: str) -> dict[str, Any] | None:
        try:
            return self.fs.info(path)
        except FileNotFoundError:
            return None

    def read(self, path: str, digest: str) -> tuple[bytes | None, str]:
        """(bytes, where from), or (None, why not)."""
        info = self._info(path)
        in_git = info is not None and "fs_info" in info  # served from the git tree, not from DVC
        try:
            data = self.fs.read_bytes(path) if info is not None else None
        except FileNotFoundError:  # a DVC output whose object is not in the cache
            data = None
        if data is not None and explain.md5(data) == digest:
            return data, "git" if in_git else f"DVC cache {self.cache} (dvc.api at {self.commit[:12]})"
        if data is not None and in_git:
            return None, (
                f"the copy of {path} committed to git does not match dvc.lock: they were committed "
                f"from different runs (run `dvc repro` and commit both)"
            )
        return None, (
            f"the committed version is not in the DVC cache ({self.cache}) nor in git (`dvc pull` "
            f"fetches it from a remote); the hashes still differ"
        )

    def listing(self, path: str, digest: str) -> dict[str, str] | None:
        """relative path -> md5 of a committed directory output."""
        try:
            found = self.fs.find(path, detail=True)
        except FileNotFoundError:  # the .dir listing is not in the cache
            return None
        if not found:
            return None
        return {
            str(Path(name).relative_to(path)): info.get("md5") or explain.md5(self.fs.read_bytes(name))
            for name, info in found.items()
        }


def cache_dir(repo: Path, venv: Path) -> Path:
    """The checkout's DVC cache (`dvc cache dir` honours a configured location)."""
    result = subprocess.run([str(venv / "bin" / "dvc"), "cache", "dir"], cwd=repo, capture_output=True, text=True)
    lines = result.stdout.strip().splitlines()
    return Path(lines[-1]) if result.returncode == 0 and lines else repo / ".dvc" / "cache"


def _find(params: dict[str, Any], name: str) -> Any:
    for key, value in params.items():
        if key == name or key.endswith("." + name):
            return value
        if isinstance(value, dict) and (found := _find(value, name)) is not None:
            return found
    return None


class Explainer:
    """Explains the differing entries of one run, given the committed lock and the clone."""

    def __init__(self, committed_lock: dict[str, Any], committed: Committed, clone: Path):
        self.lock, self.committed, self.clone = committed_lock, committed, clone
        self.writers = lockdiff.producers(committed_lock)
        self.key = id_column(clone)
        self._features: tuple[Any, list[str] | None] | None = None

    def __call__(self, entry: lockdiff.Entry, run_entries: list[lockdiff.Entry]) -> dict[str, Any]:
        if entry.rebuilt is None:
            return {"summary": "not in the rebuilt dvc.lock: the stage did not run (see the log)"}
        if entry.committed is None:
            return {"summary": "not in the committed dvc.lock (a new stage or path)"}
        if entry.kind == "param":
            return {
                "summary": f"dvc.lock records {entry.committed} but the commit's params give {entry.rebuilt}: "
                f"dvc.lock was not re-recorded after params changed (run `dvc repro`, commit dvc.lock)"
            }
        if entry.kind == "dep":
            writer = self.writers.get(entry.path)
            if writer is not None:
                return {"summary": f"input written by stage {writer!r}: see its output {entry.path}"}
            return {
                "summary": "this commit's file is not the one dvc.lock recorded: it changed after the last "
                "`dvc repro` (run it and commit dvc.lock)"
            }
        return self.output(entry, run_entries)

    def output(self, entry: lockdiff.Entry, run_entries: list[lockdiff.Entry]) -> dict[str, Any]:
        rebuilt = self.clone / entry.path
        if entry.committed.endswith(".dir"):
            return self.directory(entry, rebuilt)
        old, where = self.committed.read(entry.path, entry.committed)
        if old is None:
            return {"summary": where}
        result = explain.explain_file(entry.path, old, rebuilt.read_bytes(), **self.context(entry, run_entries))
        result["committed_from"] = where
        return result

    def directory(self, entry: lockdiff.Entry, rebuilt: Path) -> dict[str, Any]:
        listing = self.committed.listing(entry.path, entry.committed)
        if listing is None:
            return {"summary": f"the committed listing of {entry.path}/ is neither in the DVC cache nor in git"}
        now = {
            str(p.relative_to(rebuilt)): files.file_digest(p, "md5") for p in sorted(rebuilt.rglob("*")) if p.is_file()
        }
        files_ = {}
        for name in sorted(set(listing) | set(now)):
            if listing.get(name) == now.get(name):
                continue
            if name not in now or name not in listing:
                files_[name] = {"summary": "only in the " + ("committed" if name in listing else "rebuilt") + " output"}
                continue
            old, where = self.committed.read(f"{entry.path}/{name}", listing[name])
            files_[name] = (
                {"summary": where} if old is None else explain.explain_file(name, old, (rebuilt / name).read_bytes())
            )
        shown = "; ".join(f"{name}: {info['summary']}" for name, info in list(files_.items())[:3])
        return {"summary": f"{len(files_)} of {len(set(listing) | set(now))} files differ: {shown}", "files": files_}

    def context(self, entry: lockdiff.Entry, run_entries: list[lockdiff.Entry]) -> dict[str, Any]:
        context: dict[str, Any] = {"key": self.key}
        if entry.path == str(config.SNAPSHOT.relative_to(config.ROOT)):
            # Same params (as_of) as committed: unless the code changed too, a
            # changed snapshot can only come from the source itself.
            inputs = [e for e in run_entries if e.stage == entry.stage and e.kind != "out"]
            if all(e.identical for e in inputs if e.kind == "param"):
                context["snapshot_as_of"] = _find(self.lock["stages"][entry.stage].get("params") or {}, "as_of")
                context["code_changed"] = [e.path for e in inputs if e.kind == "dep" and not e.identical]
        if Path(entry.path).suffix in (".pkl", ".pickle", ".joblib"):
            context.update(zip(("test_features", "features"), self.test_features(), strict=True))
        return context

    def test_features(self) -> tuple[Any, list[str] | None]:
        """The rebuilt test set and the model's feature order (from the rebuilt manifest)."""
        if self._features is None:
            test = self.clone / config.TEST_FEATURES.relative_to(config.ROOT)
            manifest = self.clone / config.MANIFEST.relative_to(config.ROOT)
            frame = files.read_frame(test) if test.is_file() else None
            features = json.loads(manifest.read_text(encoding="utf-8")).get("features") if manifest.is_file() else None
            self._features = (frame, features)
        return self._features


def id_column(clone: Path) -> str | None:
    """The unique id of the commit's dataset adapter (aligns a snapshot's rows), None if it cannot be read.

    A commit without params.yaml (a bare DVC project) or with params that this
    checkout's schema refuses still gets every difference named, only not
    aligned row by row.
    """
    try:
        adapter, _ = load_adapter(load_params(clone / config.PARAMS_FILE.name))
    except ValueError:  # ParamsError included
        return None
    return adapter.id


def run_doctor(venv: Path, clone: Path) -> dict[str, Any]:
    """src/tools/doctor.py in the rebuild's venv, against the commit's lock and manifest."""
    result = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "src.tools.doctor",
            "--json",
            "--lock",
            str(clone / "requirements.lock"),
            "--manifest",
            str(clone / config.MANIFEST.relative_to(config.ROOT)),
        ],
        cwd=config.ROOT,
        capture_output=True,
        text=True,
    )
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        return {"ok": False, "mismatches": [f"doctor could not run: {result.stderr.strip()[-1000:]}"], "notes": []}


def report_doctor(report: dict[str, Any], venv: Path, clone: Path, echo) -> None:
    """Run the environment check once, into the report, and echo what it found."""
    report["doctor"] = run_doctor(venv, clone)
    for line in report["doctor"].get("notes", []):
        echo(f"  doctor note: {line}")
    for line in report["doctor"].get("mismatches", []):
        echo(f"  doctor MISMATCH: {line}")
    if report["doctor"].get("ok"):
        echo("  doctor: no mismatches with requirements.lock or the model manifest")


def rebuild_and_compare(
    variant: Variant, clone: Path, venv: Path, targets: list[str], log: Path, committed: Committed, echo, label: str
) -> Run:
    """One `dvc repro --force` of the clone under `variant`, every lock entry compared and explained."""
    lock_path = clone / LOCK_FILE
    if not lock_path.is_file():
        raise VerifyError(f"the commit has no {LOCK_FILE}: nothing to compare with")
    committed_lock = lockfile.read_dvc_lock(lock_path)
    stages = lockdiff.upstream(committed_lock, targets) if targets else None
    # Rebuild the lock from nothing: a stage that fails then has no entry,
    # instead of its committed entry passing for an identical rebuild.
    lock_path.unlink()
    run = Run(variant.name, variant.describe(), variant.env, str(clone))
    echo(f"run {label} {variant.name} ({run.environment}): dvc repro --force {' '.join(targets)}".rstrip())
    started = time.perf_counter()
    run.status = rebuild.repro(clone, venv, variant, targets, log)
    run.seconds = round(time.perf_counter() - started, 1)
    run.log_tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
    echo(f"  {'done' if run.status == 0 else f'FAILED (exit {run.status})'} in {run.seconds} s")
    # A run that failed before its first stage finished leaves no dvc.lock.
    rebuilt_lock = lockfile.read_dvc_lock(lock_path) if lock_path.is_file() else {}
    entries = lockdiff.compare(committed_lock, rebuilt_lock, stages)
    explainer = Explainer(committed_lock, committed, clone)
    for entry in entries:
        row = asdict(entry) | {"identical": entry.identical}
        if not entry.identical:
            row["explanation"] = explainer(entry, entries)
        run.entries.append(row)
    return run


def verify(
    repo: Path = config.ROOT,
    rev: str = "HEAD",
    runs: list[Variant] | None = None,
    targets: list[str] | None = None,
    report_path: Path = REPORT,
    keep: bool = False,
    echo=print,
) -> dict[str, Any]:
    """Rebuild `rev` once per variant and compare; write and return the report."""
    repo = Path(repo).resolve()
    runs = runs or rebuild.variants(vary=False)
    targets = targets or []
    commit = rebuild.resolve(repo, rev)
    workdir = Path(tempfile.mkdtemp(prefix="verify-"))
    report: dict[str, Any] = {
        "repo": str(repo),
        "rev": rev,
        "commit": commit,
        "targets": targets,
        "report": str(report_path),
        "runs": [],
    }
    try:
        for index, variant in enumerate(runs):
            base = workdir / "elsewhere" / "a" / "deeper" / "directory" if variant.elsewhere else workdir / variant.name
            clone = rebuild.make_clone(repo, commit, base / repo.name)
            if index == 0:
                venv, how = rebuild.prepare_venv(repo, clone, workdir / "venv")
                report["venv"] = how
                echo(f"verify: {commit[:12]} ({rev}) of {repo}; venv: {how}")
                report_doctor(report, venv, clone, echo)
                committed = Committed(repo, commit, cache_dir(repo, venv))
            run = rebuild_and_compare(
                variant,
                clone,
                venv,
                targets,
                workdir / f"{variant.name}.log",
                committed,
                echo,
                f"{index + 1}/{len(runs)}",
            )
            report["runs"].append(asdict(run) | {"identical": run.identical})
            if not keep:
                rebuild.remove(base)
    finally:
        if not keep:
            rebuild.remove(workdir)
        else:
            report["workdir"] = str(workdir)
    report["identical"] = all(run["identical"] for run in report["runs"])
    files.write_json(report_path, report)
    return report


def format_table(report: dict[str, Any]) -> str:
    """stage | kind | path | committed | rebuilt (one column per run) | identical."""
    runs = report["runs"]
    if not runs:
        return "(no runs)"
    single = len(runs) == 1
    header = ["stage", "kind", "path", "committed"] + (["rebuilt"] if single else [run["name"] for run in runs])
    header.append("identical")
    rows = []
    for position, first in enumerate(runs[0]["entries"]):
        cells = [first["stage"], first["kind"], first["path"], lockdiff.short(first["committed"], first["kind"])]
        same = True
        for run in runs:
            entry = run["entries"][position] if position < len(run["entries"]) else None
            if entry is None:
                cells.append("(none)")
                same = False
            elif single:
                cells.append(lockdiff.short(entry["rebuilt"], entry["kind"]))
                same = entry["identical"]
            else:
                cells.append("same" if entry["identical"] else lockdiff.short(entry["rebuilt"], entry["kind"], 8))
                same = same and entry["identical"]
        cells.append("yes" if same else "NO")
        rows.append(cells)
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header] + rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_explanations(report: dict[str, Any]) -> str:
    """One line per differing path (a file several stages depend on is named once)."""
    lines = []
    for run in report["runs"]:
        prefix = f"[{run['name']}] " if len(report["runs"]) > 1 else ""
        if run["status"] != 0:
            lines.append(f"{prefix}dvc repro failed (exit {run['status']}); last lines of its log:")
            lines += ["    " + line for line in run["log_tail"].splitlines()[-15:]]
        grouped: dict[tuple[str, str, str], list[str]] = {}
        for entry in run["entries"]:
            if "explanation" in entry:
                key = (entry["kind"], entry["path"], entry["explanation"]["summary"])
                grouped.setdefault(key, []).append(entry["stage"])
        for (kind, path, summary), stages in grouped.items():
            lines.append(f"{prefix}{kind} {path} ({', '.join(stages)}): {summary}")
        outputs = [entry for entry in run["entries"] if entry["kind"] == "out"]
        if outputs and all(entry["identical"] for entry in outputs) and not all(e["identical"] for e in run["entries"]):
            lines.append(f"{prefix}every output is identical: only what dvc.lock recorded about the inputs is stale")
    return "\n".join(lines)
