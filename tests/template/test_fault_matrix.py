"""The fault matrix: mistakes and attacks, each refused the same way.

Every case asserts three things:
1. the message names the problem (a key, a column, a path, a stage);
2. the command exits non-zero (HTTP: answers 4xx, never 5xx);
3. every output is the old one or absent, never half-written: no file under the
   output folders differs from the last good run, and no stray temporary is left.

The cases run in one clone of HEAD. Its pipeline is built by the kill -9 rounds
(the `pipeline` fixture): each stage in turn is killed the moment it starts
writing, then re-run cleanly, and must then record exactly the outputs that the
committed dvc.lock holds. Every other case starts from those outputs and puts back
what it changed. A row of a table reads like the issue's list of faults.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from src.pipeline import check_params, check_recorded, config, lockfile
from src.serving import serve
from tests.conftest import descendants, make_clone, project_env, require_embedded_source, require_source, run
from tests.template.frames import ADAPTER
from tests.template.test_predict import tiny_deployed
from tests.template.test_serve import as_json_rows

PASSWORD = "hunter2"
STAGES = [name for name in yaml.safe_load((config.ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]]
# Where each stage writes (its outputs' folders): a kill -9 is aimed at the first
# entry that appears in them, and strays are looked for there.
OUTPUT_DIRS = {
    "check_params": ["data"],
    "gather": ["data/snapshot"],
    "featurize": ["data/features", "metrics"],
    "check_recorded": ["data"],
    "train": ["models"],
    "evaluate": ["eval"],
}
SCANNED = ["data", "data/snapshot", "data/features", "data/predictions", "models", "eval", "metrics"]
MARKER = check_params.MARKER.relative_to(config.ROOT).as_posix()
RECORDED_MARKER = check_recorded.MARKER.relative_to(config.ROOT).as_posix()
# DVC deletes a check stage's own marker before it runs the check (git has both).
MARKERS = {MARKER, RECORDED_MARKER}


def rel(path: Path) -> str:
    return path.relative_to(config.ROOT).as_posix()


# --- the clone, its outputs, and the kill -9 rounds ----------------------------


def outputs_state(root: Path) -> dict[str, str]:
    """MD5 of every file in the output folders (recursively, but not through data/'s subfolders'
    links), .gitignore files aside: outputs, and any temporary a run left behind."""
    state = {}
    for folder in SCANNED:
        base = root / folder
        if not base.is_dir():
            continue
        paths = base.iterdir() if folder == "data" else base.rglob("*")
        for path in paths:
            if path.is_file() and not path.is_symlink() and path.name != ".gitignore":
                state[path.relative_to(root).as_posix()] = hashlib.md5(path.read_bytes()).hexdigest()
    return state


def assert_old_or_absent(root: Path, baseline: dict[str, str], may_vanish: set[str] = frozenset()) -> None:
    """Every file in the output folders is one of the last good run's, unchanged; only `may_vanish` may be gone."""
    now = outputs_state(root)
    strays = sorted(set(now) - set(baseline))
    assert not strays, f"files the last good run did not leave (half-written or stray): {strays}"
    changed = sorted(path for path in now if now[path] != baseline[path])
    assert not changed, f"outputs changed by a failed command: {changed}"
    gone = sorted(set(baseline) - set(now) - set(may_vanish))
    assert not gone, f"outputs deleted by a failed command: {gone}"


def stage_outs(lock: dict, stage: str) -> list[tuple[str, str]]:
    return sorted((out["path"], out["md5"]) for out in lock["stages"][stage]["outs"])


# Loaded into every Python process of a run through PYTHONPATH; active only in the
# stage named by FAULT_KILL_STAGE, which it SIGKILLs while it writes: as soon as a new
# entry (a temporary file, a staging folder, an output) appears in the watched folders,
# or, for a write too quick to see, just before a rename into them.
KILLER = """
import os, sys
_stage = os.environ.get("FAULT_KILL_STAGE")
if _stage and _stage in sys.orig_argv:
    import signal, threading, time
    _dirs = os.environ["FAULT_KILL_WATCH"].split(os.pathsep)
    # A small write (a marker) is seen by the watcher and renamed by the stage in the
    # same millisecond: both call _kill. The first holds the lock until the kill, so the
    # second cannot truncate the note it wrote (an empty note read as "nothing caught").
    _once = threading.Lock()
    def _kill(what):
        _once.acquire()
        with open(os.environ["FAULT_KILL_NOTE"], "w") as note:
            note.write(what)
        os.kill(os.getpid(), signal.SIGKILL)
    def _renaming(original):
        def rename(src, dst, *args, **kwargs):
            if os.path.dirname(os.path.abspath(dst)) in _dirs:
                _kill(f"{src} -> {dst}")
            return original(src, dst, *args, **kwargs)
        return rename
    os.replace, os.rename = _renaming(os.replace), _renaming(os.rename)
    def _entries():
        found = set()
        for folder in _dirs:
            try:
                found.update(os.path.join(folder, name) for name in os.listdir(folder))
            except FileNotFoundError:
                pass
        return found
    _before = _entries()
    def _watch():
        while True:
            new = _entries() - _before
            if new:
                _kill("\\n".join(sorted(new)))
            time.sleep(0.001)
    threading.Thread(target=_watch, daemon=True).start()
"""


@dataclasses.dataclass
class Kill:
    result: subprocess.CompletedProcess
    caught: str  # what the stage had started to write when it was killed
    after_kill: dict[str, str]
    rerun: subprocess.CompletedProcess
    after_rerun: dict[str, str]
    rerun_outs: list[tuple[str, str]]


@dataclasses.dataclass
class Pipeline:
    root: Path
    committed: dict  # HEAD's dvc.lock
    kills: dict[str, Kill]
    baseline: dict[str, str]
    rows_csv: Path  # a few test rows, as the batch command reads them
    hook: Path  # the folder of the KILLER sitecustomize

    def kill_env(self, stage: str, note: Path) -> dict[str, str]:
        """The environment in which `stage` is killed the moment it starts writing (KILLER)."""
        return dict(
            PYTHONPATH=str(self.hook),
            FAULT_KILL_STAGE=f"src.pipeline.{stage}",
            FAULT_KILL_NOTE=str(note),
            FAULT_KILL_WATCH=os.pathsep.join(str(self.root / d) for d in OUTPUT_DIRS[stage]),
        )

    def dvc(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return run(["dvc", *args], cwd=self.root, check=False, **env)

    def python(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return run(["python", *args], cwd=self.root, check=False, **env)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Pipeline:
    """A clone of HEAD whose outputs were built by killing each stage mid-write, then re-running it."""
    require_source()
    base = tmp_path_factory.mktemp("faults")
    root = make_clone(base / "clone")
    hook = base / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILLER, encoding="utf-8")
    committed = lockfile.parse_lock(run(["git", "show", "HEAD:dvc.lock"], cwd=root).stdout)
    kills = {}
    for stage in STAGES:
        note = base / f"killed-{stage}.txt"
        killed = run(
            ["dvc", "repro", "--force", "--single-item", stage],
            cwd=root,
            check=False,
            PYTHONPATH=str(hook),
            FAULT_KILL_STAGE=f"src.pipeline.{stage}",
            FAULT_KILL_WATCH=os.pathsep.join(str(root / d) for d in OUTPUT_DIRS[stage]),
            FAULT_KILL_NOTE=str(note),
        )
        after_kill = outputs_state(root)
        rerun = run(["dvc", "repro", "--force", "--single-item", stage], cwd=root, check=False)
        kills[stage] = Kill(
            killed,
            note.read_text() if note.exists() else "",
            after_kill,
            rerun,
            outputs_state(root),
            stage_outs(lockfile.read_dvc_lock(root / "dvc.lock"), stage),
        )
    test_rows = pd.read_parquet(root / rel(config.TEST_FEATURES)).head(8)
    rows_csv = base / "rows.csv"
    test_rows.drop(columns=ADAPTER.target).to_csv(rows_csv, index=False)
    return Pipeline(root, committed, kills, outputs_state(root), rows_csv, hook)


def restore(pipeline: Pipeline) -> None:
    """The recovery of docs/faults.md, so that a case which changed outputs (a failure) cannot fail the next."""
    root = pipeline.root
    for path in set(outputs_state(root)) - set(pipeline.baseline):
        (root / path).unlink()
    for path in root.glob("eval/.*"):  # a killed evaluate's staging folder
        if path.is_dir():
            shutil.rmtree(path)
    run(["dvc", "checkout", "--force"], cwd=root, check=False)
    uncached = [
        path
        for path in pipeline.baseline
        if run(["git", "ls-files", "--error-unmatch", path], cwd=root, check=False).returncode == 0
    ]
    run(["git", "checkout", "--", *uncached], cwd=root)


@pytest.fixture
def repo(pipeline) -> Pipeline:
    """The shared clone; params.yaml and every output are put back after each case."""
    params = pipeline.root / "params.yaml"
    text = params.read_bytes()
    yield pipeline
    params.write_bytes(text)
    for marker in MARKERS:
        if not (pipeline.root / marker).exists():  # deleted by DVC before a refused check: git has it
            run(["git", "checkout", "--", marker], cwd=pipeline.root)
    if outputs_state(pipeline.root) != pipeline.baseline:
        restore(pipeline)
        assert outputs_state(pipeline.root) == pipeline.baseline, "the outputs could not be restored"


# --- process faults: kill -9 in each stage --------------------------------------


@pytest.mark.long
@pytest.mark.parametrize("stage", STAGES)
def test_kill_9_in_a_stage_then_a_clean_rerun_writes_the_locked_bytes(pipeline, stage):
    kill = pipeline.kills[stage]
    # The message names the problem: DVC reports the stage's command and the signal,
    # as -9 when the stage's shell execs the command (bash) or as 137 = 128 + SIGKILL
    # when it forks it (dash as /bin/sh, which is what DVC runs when $SHELL is unset).
    output = kill.result.stdout + kill.result.stderr
    assert kill.result.returncode != 0, output
    assert f"failed to reproduce '{stage}'" in output, output
    assert "exited with -9" in output or "exited with 137" in output, output
    assert kill.caught, f"{stage} finished before it wrote anything the kill could catch"
    # Right after the kill: this stage's outputs are absent (DVC deletes them before
    # the command runs) or whole; what else is there is the killed writer's temporary.
    outs = {path for path, _ in stage_outs(pipeline.committed, stage)}
    for path, digest in kill.after_kill.items():
        if path in outs:
            assert digest == pipeline.baseline[path], f"{path} half-written by the killed {stage}"
    # The clean re-run: the committed dvc.lock's bytes, and no temporary left.
    assert kill.rerun.returncode == 0, kill.rerun.stdout + kill.rerun.stderr
    assert kill.rerun_outs == stage_outs(pipeline.committed, stage)
    strays = sorted(set(kill.after_rerun) - set(pipeline.baseline))
    assert not strays, f"the re-run of {stage} left {strays}"


@pytest.mark.long
def test_after_every_kill_and_rerun_the_lock_is_the_committed_one(pipeline):
    assert run(["git", "diff", "--stat", "--exit-code", "dvc.lock"], cwd=pipeline.root, check=False).returncode == 0
    status = pipeline.dvc("status")
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout
    plots = pipeline.dvc("plots", "show", "-o", str(pipeline.root.parent / "plots"))
    assert plots.returncode == 0, plots.stdout + plots.stderr


def _temporaries(root: Path) -> list[str]:
    """The `.*.tmp` entries (files or staging folders) in the output folders."""
    return sorted(
        path.relative_to(root).as_posix()
        for folder in check_params.output_folders(root)
        for path in folder.glob(".*.tmp")
    )


def _make_repro(root: Path) -> subprocess.CompletedProcess:
    # As `make repro` runs; -o: the clone shares this checkout's venv and source, never rebuilt here.
    return run(
        ["make", "-o", ".venv/.installed-from-lock", "-o", rel(config.SOURCE_DB), "repro"], cwd=root, check=False
    )


@pytest.mark.long
@pytest.mark.parametrize("stage", ["gather", "evaluate"])  # the stages DVC restores from its run-cache
def test_a_killed_stages_temporary_is_out_of_git_status_and_make_repro_removes_it(repo, stage, tmp_path):
    root = repo.root
    killed = run(
        ["dvc", "repro", "--force", "--single-item", stage],
        cwd=root,
        check=False,
        **repo.kill_env(stage, tmp_path / "killed.txt"),
    )
    assert killed.returncode != 0, killed.stdout + killed.stderr
    left = _temporaries(root)
    assert left, f"the kill in {stage} left no temporary to test with"
    # A plain `dvc repro` restores the stage from the run-cache: none of its code runs, the temporary stays...
    restored = repo.dvc("repro")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert f"Stage '{stage}' is cached - skipping run" in restored.stdout, restored.stdout
    assert _temporaries(root) == left
    # ...out of `git status`...
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=root).stdout
    assert not [line for line in status.splitlines() if ".tmp" in line], status
    # ...until `make repro`, whose first step sweeps the output folders.
    made = _make_repro(root)
    assert made.returncode == 0, made.stdout + made.stderr
    assert _temporaries(root) == []
    assert f"check_params: removed {left[0]}, left by a killed stage" in made.stderr, made.stderr
    assert outputs_state(root) == repo.baseline


def _is_python_running(pid: int, module: str) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except FileNotFoundError:
        return False
    return os.path.basename(argv[0]).startswith("python") and module in argv


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.long
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process tree from /proc (Linux)")
@pytest.mark.parametrize("shell", ["/bin/bash", None], ids=["bash", "sh"])
def test_killing_dvc_kills_the_stage_it_runs_so_no_unrecorded_model_appears(repo, shell):
    root = repo.root
    lock = (root / "dvc.lock").read_bytes()
    dvc = subprocess.Popen(
        ["dvc", "repro", "--force", "--single-item", "train"],
        cwd=root,
        env=project_env(SHELL=shell),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stage = None
    try:
        for _ in range(1200):  # the stage's Python process (not the shell that may run it)
            stage = next((pid for pid in descendants(dvc.pid) if _is_python_running(pid, "src.pipeline.train")), None)
            if stage:
                break
            time.sleep(0.05)
        assert stage, "train did not start"
        time.sleep(2)  # well into its start-up, and far from done
    finally:
        dvc.kill()
        dvc.wait()
    for _ in range(200):  # the stage notices within a second or so (src/pipeline/lifetime.py)
        if not _running(stage):
            break
        time.sleep(0.05)
    assert not _running(stage), f"train (PID {stage}) outlived the dvc that started it"
    # DVC deleted the model before the command ran; nothing writes one later that dvc.lock does not record.
    assert not (root / rel(config.MODEL)).exists()
    time.sleep(2)
    assert not (root / rel(config.MODEL)).exists()
    assert (root / "dvc.lock").read_bytes() == lock


# --- params ----------------------------------------------------------------------


def edit_params(root: Path, change: Callable[[dict], None]) -> None:
    """Change params.yaml through its parsed values (comments go; the `repo` fixture puts the file back)."""
    path = root / "params.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


def _set(path: str, value) -> Callable[[dict], None]:
    def change(raw: dict) -> None:
        *parents, key = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[key] = value

    return change


def _drop(path: str) -> Callable[[dict], None]:
    def change(raw: dict) -> None:
        *parents, key = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        del node[key]

    return change


def _as_of_unquoted(raw: dict) -> None:
    # safe_dump writes a date object unquoted: `as_of: 2014-01-31`, as a person might type it.
    raw["gather"]["as_of"] = dt.date.fromisoformat(raw["gather"]["as_of"][:10])


def _as_of_unquoted_timestamp(raw: dict) -> None:
    # A timestamp without a zone, unquoted: `as_of: 2014-01-31 12:00:00`; YAML reads a naive datetime.
    raw["gather"]["as_of"] = dt.datetime.fromisoformat(raw["gather"]["as_of"][:10] + "T12:00:00")


NOT_YAML = "seed: [unclosed\n"


@dataclasses.dataclass(frozen=True)
class TextEdit:
    """An edit of params.yaml's text, where a parsed round trip cannot say it (a key given twice)."""

    change: Callable[[str], str]


# The top-level seed again, at the end of the file: PyYAML alone would take the second silently.
DUPLICATED_KEY = TextEdit(lambda text: text + "seed: 1\n")


def _classes_off_by_one(raw: dict) -> None:
    """The recorded classes with the last one replaced by a label the training data does not have."""
    last = raw["classes"][-1]
    raw["classes"] = raw["classes"][:-1] + [last + 1 if isinstance(last, int) else f"{last}~"]


# The first categorical feature, whose recorded list a case empties (None: the adapter has none).
FIRST_CATEGORICAL = next(iter(ADAPTER.categorical), None)

# (case, how `make repro` or a bare `dvc repro` meets it, the edit, what the message must name)
PARAMS_CASES = [
    (
        "a typo in a value",
        "dvc",
        _set("train.hist_gradient_boosting.max_iter", "lots"),
        ["train.hist_gradient_boosting.max_iter", "valid integer", "'lots'"],
    ),
    (
        "a typo in a value, through make",
        "make",
        _set("train.hist_gradient_boosting.max_iter", "lots"),
        ["train.hist_gradient_boosting.max_iter", "'lots'"],
    ),
    ("a quoted number", "dvc", _set("featurize.test_percent", "20"), ["featurize.test_percent", "valid integer"]),
    ("a misspelt key", "dvc", _set("train.max_iterr", 5), ["train.max_iterr", "unknown key"]),
    ("a misspelt section no stage lists", "dvc", _set("trian", {"model": "random_forest"}), ["trian", "unknown key"]),
    ("a missing key", "dvc", _drop("gather.chunk_rows"), ["gather.chunk_rows", "missing"]),
    ("an unknown adapter", "dvc", _set("dataset.adapter", "no_such_adapter"), ["dataset.adapter", "no_such_adapter"]),
    ("a future as_of", "dvc", _set("gather.as_of", "2999-12-31"), ["gather.as_of", "in the future"]),
    ("an unquoted date (DVC cannot read it)", "make", _as_of_unquoted, ["gather.as_of", "quote the date"]),
    # The fix suggested must itself be accepted: a zone (Z), which as_of requires.
    (
        "an unquoted timestamp without a zone",
        "make",
        _as_of_unquoted_timestamp,
        ["gather.as_of", "quote the timestamp", "T12:00:00Z'", "no time zone"],
    ),
    ("a file that is not YAML", "make", NOT_YAML, ["params.yaml", "not valid YAML"]),
    ("category lists that do not fit the adapter", "make", _set("categories", {}), ["categories", "make categories"]),
    ("a duplicated key", "make", DUPLICATED_KEY, ["params.yaml", "'seed' appears twice", "keep one"]),
    # Past check_params (the lists are not known before featurize) and stopped before train.
    (
        "classes that do not fit the training labels",
        "dvc",
        _classes_off_by_one,
        [
            "check_recorded: error: classes",
            "labels not recorded",
            "recorded classes with no training row",
            "make categories",
            "the model and its manifest are as they were",
        ],
    ),
    # (An adapter without categorical features has no list to empty.)
    *(
        [
            (
                "an emptied category list",
                "dvc",
                _set(f"categories.{FIRST_CATEGORICAL}", []),
                [
                    "check_recorded: error: categories",
                    f"no values recorded for [{FIRST_CATEGORICAL!r}]",
                    "make categories",
                ],
            ),
            (
                "an emptied category list, through dvc exp run -S",
                "exp",
                f"categories.{FIRST_CATEGORICAL}=[]",
                [
                    "check_recorded: error: categories",
                    f"no values recorded for [{FIRST_CATEGORICAL!r}]",
                    "make categories",
                ],
            ),
        ]
        if FIRST_CATEGORICAL
        else []
    ),
]


@pytest.mark.long
@pytest.mark.parametrize(
    "how, edit, expected", [case[1:] for case in PARAMS_CASES], ids=[case[0] for case in PARAMS_CASES]
)
def test_a_params_mistake_leaves_every_output_in_place(repo, how, edit, expected):
    params = repo.root / "params.yaml"
    if how == "exp":
        pass  # `dvc exp run -S` edits params.yaml itself
    elif isinstance(edit, TextEdit):
        params.write_text(edit.change(params.read_text(encoding="utf-8")), encoding="utf-8")
    elif isinstance(edit, str):
        params.write_text(edit, encoding="utf-8")
    else:
        edit_params(repo.root, edit)
    if how == "exp":
        result = repo.dvc("exp", "run", "-S", edit)
    elif how == "make":
        result = _make_repro(repo.root)
    else:
        result = repo.dvc("repro")
    message = result.stdout + result.stderr
    assert result.returncode != 0, message
    for text in expected:
        assert text in message, message
    assert "Traceback" not in message
    assert "Running stage 'gather'" not in message and "Running stage 'train'" not in message
    # The deployed model is still there, byte for byte (and so is every other output).
    for path in (config.MODEL, config.MANIFEST):
        assert hashlib.md5((repo.root / rel(path)).read_bytes()).hexdigest() == repo.baseline[rel(path)]
    # DVC deletes a check stage's own marker before it runs: nothing else may go.
    assert_old_or_absent(repo.root, repo.baseline, may_vanish=MARKERS)


@pytest.mark.long
def test_an_unquoted_date_fails_dvc_itself_which_is_why_make_checks_first(repo):
    edit_params(repo.root, _as_of_unquoted)
    status = repo.dvc("status")
    assert status.returncode != 0 and "Unsupported value of type 'date'" in status.stdout + status.stderr
    assert_old_or_absent(repo.root, repo.baseline)


@pytest.mark.long
def test_after_the_fix_only_the_check_reruns_and_every_output_is_the_old_one(repo):
    params = repo.root / "params.yaml"
    good = params.read_text(encoding="utf-8")
    edit_params(repo.root, _set("featurize.test_percent", "twenty"))
    assert repo.dvc("repro").returncode != 0
    assert not (repo.root / MARKER).exists()
    params.write_text(good, encoding="utf-8")
    result = repo.dvc("repro")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Running stage 'check_params'" in result.stdout
    assert [line for line in result.stdout.splitlines() if line.startswith("Running stage")] == [
        "Running stage 'check_params':"
    ]
    assert outputs_state(repo.root) == repo.baseline


@pytest.mark.long
def test_the_recovery_command_brings_back_a_deleted_model(repo):
    # docs/faults.md: a stage that failed inside (a single-stage run, a kill) leaves
    # no outputs; its cached ones come back from the DVC cache, the manifest from git.
    for path in (config.MODEL, config.MANIFEST):
        (repo.root / rel(path)).unlink()
    result = repo.dvc("checkout", "train")
    assert result.returncode == 0, result.stdout + result.stderr
    assert run(["git", "checkout", "--", rel(config.MANIFEST)], cwd=repo.root, check=False).returncode == 0
    assert outputs_state(repo.root) == repo.baseline


# --- source ------------------------------------------------------------------------


def _entity_table() -> sa.Table:
    return ADAPTER.source_tables.tables[ADAPTER.entity_table]


def _declared(path: Path, skip_table: str | None = None, skip_column: str | None = None) -> str:
    """A SQLite source with the adapter's tables (less one table or one column of the entity table), no rows."""
    metadata = sa.MetaData()
    entity = _entity_table().name
    for table in ADAPTER.source_tables.sorted_tables:
        if table.name != skip_table:
            sa.Table(
                table.name,
                metadata,
                *[sa.Column(c.name, c.type) for c in table.columns if (table.name, c.name) != (entity, skip_column)],
            )
    engine = sa.create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()
    return f"sqlite:///{path}"


def _numeric_columns() -> list[str]:
    """The numeric snapshot columns that the snapshot reads from the entity table's columns of the same name."""
    return [
        column.name
        for column in _entity_table().columns
        if column.name != ADAPTER.id
        and column.name in ADAPTER.snapshot_schema.names
        and column.name not in ADAPTER.snapshot_sources
        and isinstance(column.type, (sa.Integer, sa.Float, sa.Numeric))
    ]


def _out_of_domain() -> tuple[str | None, int | None]:
    """(a numeric column with a bounded gather domain, a value 1000 beyond its bound), or (None, None).

    gather checks values against `snapshot_domains`, not `feature_ranges` (which
    bound the model's inputs, derived later): a column with a range but no
    domain is not refused at gather, so only a domain with a bound is a case.
    """
    for name in _numeric_columns():
        domain = ADAPTER.snapshot_domains.get(name)
        if domain is not None and domain.low is not None:
            return name, math.floor(domain.low) - 1000
        if domain is not None and domain.high is not None:
            return name, math.ceil(domain.high) + 1000
    return None, None


# (the column, the value): text where a number belongs, a number beyond its gather domain, a NULL id.
BAD_VALUES = {
    "text": (next(iter(_numeric_columns()), None), "abc"),
    "out of range": _out_of_domain(),
    "null id": (ADAPTER.id, None),
}
# Why a case is skipped when the adapter declares nothing for it.
NO_COLUMN = {
    "text": "the adapter's entity table has no numeric column for the 'text' case",
    "out of range": "the adapter declares no gather domain (snapshot_domains) with a bound on a numeric column "
    "of its entity table: nothing is out of range at gather",
}


def _allow_null(path: Path, table: str, column: str) -> None:
    """Drop `column`'s NOT NULL in a SQLite file, as a source without that constraint would be."""
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        query = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?"
        sql = connection.execute(query, (table,)).fetchone()[0]
        loose = re.sub(rf"(\b{column}\b[^,]*?)\s+NOT NULL", r"\1", sql, count=1)
        connection.execute("PRAGMA writable_schema = ON")
        connection.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (loose, table))
        connection.execute("PRAGMA writable_schema = OFF")


def _bad_value(kind: str) -> Callable[[Path], tuple[str, list[str]]]:
    """A copy of the demo source in which one entity (the smallest id) has a bad value."""

    def make(folder: Path) -> tuple[str, list[str]]:
        column, value = BAD_VALUES[kind]
        if column is None:
            pytest.skip(NO_COLUMN[kind])
        table, key = _entity_table().name, ADAPTER.id
        path = folder / "bad.sqlite"
        require_embedded_source()
        shutil.copyfile(config.SOURCE_DB, path)
        if value is None:
            _allow_null(path, table, column)
        with contextlib.closing(sqlite3.connect(path)) as connection, connection:
            first = connection.execute(f"SELECT min({key}) FROM {table}").fetchone()[0]
            connection.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (value, first))
        # The message names the table, the column, the entity and the value (for a NULL id, the column says it).
        named = [table, column] if value is None else [table, column, str(first), str(value)]
        return f"sqlite:///{path}", named

    return make


def _url(url: str, *expected: str) -> Callable[[Path], tuple[str, list[str]]]:
    return lambda folder: (url.format(folder=folder), list(expected))


def _missing_table(folder: Path) -> tuple[str, list[str]]:
    table = ADAPTER.source_tables.sorted_tables[0].name
    return _declared(folder / "partial.sqlite", skip_table=table), [f"table {table!r} is missing"]


def _missing_column(folder: Path) -> tuple[str, list[str]]:
    table = _entity_table()
    column = [c.name for c in table.columns if c.name != ADAPTER.id][-1]
    expected = [f"table {table.name!r} lacks columns [{column!r}]"]
    return _declared(folder / "partial.sqlite", skip_column=column), expected


def _empty(folder: Path) -> tuple[str, list[str]]:
    return _declared(folder / "empty.sqlite"), ["empty"]


# (case, the source it meets, what the message must name). gather runs as its stage
# command does; it never deletes the old snapshot, so that must still be there.
# Where a URL carries a password, the message must not echo it in any form.
SOURCE_CASES = [
    (
        "a missing source file, password in the URL",
        _url(f"sqlite://user:{PASSWORD}@/{{folder}}/absent.sqlite", "source database not found", "absent.sqlite"),
    ),
    ("a URL that is not one, with a password in it", _url(f"not a url {PASSWORD}", config.SOURCE_URL_ENV)),
    (
        "an unknown database dialect, password in the URL",
        _url(f"nosuchdialect://u:{PASSWORD}@h/db", "source URL", "nosuchdialect"),
    ),
    (
        "an unreachable server, password in the URL",
        _url(f"postgresql://u:{PASSWORD}@127.0.0.1:9/none", "127.0.0.1", "port 9"),
    ),
    (
        "an unknown host, password in the query string",
        _url(f"postgresql://u:pw@no-such-host.invalid/db?password={PASSWORD}", "no-such-host.invalid"),
    ),
    ("a missing table", _missing_table),
    ("a missing column", _missing_column),
    ("an empty snapshot", _empty),
    ("text in a numeric column", _bad_value("text")),
    ("a value out of its declared domain", _bad_value("out of range")),
    ("a NULL entity id", _bad_value("null id")),
]


@pytest.mark.long
@pytest.mark.parametrize("source", [case[1] for case in SOURCE_CASES], ids=[case[0] for case in SOURCE_CASES])
def test_a_bad_source_stops_gather_and_keeps_the_old_snapshot(repo, source, tmp_path):
    url, expected = source(tmp_path)
    result = repo.python("-m", "src.pipeline.gather", **{config.SOURCE_URL_ENV: url})
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.startswith("gather: error: "), result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert_old_or_absent(repo.root, repo.baseline)


# --- model loading ---------------------------------------------------------------------


class _RunsCode:
    """A pickle that runs a command when loaded."""

    def __init__(self, witness: Path):
        self.witness = witness

    def __reduce__(self):
        return os.system, (f"touch {self.witness}",)


def _flip_a_byte(root: Path, _witness: Path) -> list[str]:
    path = root / rel(config.MODEL)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return [rel(config.MODEL), "refusing to load"]


def _edit_manifest(root: Path, _witness: Path) -> list[str]:
    path = root / rel(config.MANIFEST)
    manifest = json.loads(path.read_text())
    manifest["classes"] = list(reversed(manifest["classes"]))
    path.write_text(json.dumps(manifest, indent=2))
    return [rel(config.MANIFEST)]


def _relock(root: Path, relative: str) -> None:
    lock_path = root / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text())
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == relative:
                out["md5"] = hashlib.md5((root / relative).read_bytes()).hexdigest()
                out["size"] = (root / relative).stat().st_size
    lock_path.write_text(yaml.safe_dump(lock, sort_keys=False))


def _other_versions(root: Path, _witness: Path) -> list[str]:
    path = root / rel(config.MANIFEST)
    manifest = json.loads(path.read_text())
    manifest["versions"]["scikit-learn"] = "0.24.2"
    path.write_text(json.dumps(manifest, indent=2))
    _relock(root, rel(config.MANIFEST))  # consistent with dvc.lock: only the versions differ
    return ["scikit-learn: trained with 0.24.2", "--allow-version-mismatch"]


def _no_lock(root: Path, _witness: Path) -> list[str]:
    (root / "dvc.lock").unlink()
    return ["dvc.lock", "not found"]


def _code_in_the_model(root: Path, witness: Path) -> list[str]:
    # The manifest vouches for the pickle; dvc.lock does not.
    path = root / rel(config.MODEL)
    path.write_bytes(pickle.dumps(_RunsCode(witness), protocol=5))
    manifest_path = root / rel(config.MANIFEST)
    manifest = json.loads(manifest_path.read_text())
    manifest["model_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=2))
    _relock(root, rel(config.MANIFEST))  # even the manifest's entry in dvc.lock; not the model's
    return [rel(config.MODEL), "dvc.lock", "refusing to load"]


def _code_vouched_for_by_the_lock(root: Path, witness: Path) -> list[str]:
    # Model, manifest and both MD5s in dvc.lock rewritten together: every hash
    # check passes (only `git status` shows it), and the unpickler's allowlist refuses.
    _code_in_the_model(root, witness)
    _relock(root, rel(config.MODEL))
    return [rel(config.MODEL), f"{os.system.__module__}.system", "not one of this pipeline's models"]


MODEL_CASES = [
    ("a flipped byte in model.pkl", _flip_a_byte),
    ("an edited manifest", _edit_manifest),
    ("other library versions than the manifest's", _other_versions),
    ("no dvc.lock", _no_lock),
    ("a pickle that runs code, vouched for by the manifest only", _code_in_the_model),
    ("a pickle that runs code, vouched for by the manifest and dvc.lock", _code_vouched_for_by_the_lock),
]
DEPLOYED = [rel(config.MODEL), rel(config.MANIFEST), "dvc.lock"]


@pytest.fixture
def deployed_files(repo):
    """Put the clone's model, manifest and dvc.lock back after a case tampered with them."""
    saved = {name: (repo.root / name).read_bytes() for name in DEPLOYED}
    yield repo
    for name, data in saved.items():
        (repo.root / name).write_bytes(data)


def _refused_untouched(repo: Pipeline, command: list[str], tamper, tmp_path: Path, prefix: str) -> Path:
    witness = tmp_path / "code-ran"
    expected = tamper(repo.root, witness)
    tampered = {name: (repo.root / name).read_bytes() for name in DEPLOYED if (repo.root / name).exists()}
    output = tmp_path / "predictions.csv"
    result = repo.python(*[str(output) if part == "OUTPUT" else part for part in command])
    assert result.returncode != 0, result.stdout + result.stderr
    assert result.stderr.startswith(prefix) and "Traceback" not in result.stderr, result.stderr[-3000:]
    for text in expected:
        assert text in result.stderr, result.stderr
    assert not witness.exists(), "the pickle's code ran"
    assert not output.exists()
    # The refused files are left for inspection as they were; nothing else changed.
    assert {name: (repo.root / name).read_bytes() for name in tampered} == tampered
    vanished = {name for name in (rel(config.MODEL), rel(config.MANIFEST)) if name not in tampered}
    changed = {name for name in (rel(config.MODEL), rel(config.MANIFEST)) if name in tampered}
    baseline = {path: digest for path, digest in repo.baseline.items() if path not in changed}
    assert_old_or_absent(
        repo.root,
        {**baseline, **{name: hashlib.md5(tampered[name]).hexdigest() for name in changed}},
        may_vanish=vanished,
    )
    return witness


@pytest.mark.long
@pytest.mark.parametrize("tamper", [case[1] for case in MODEL_CASES], ids=[case[0] for case in MODEL_CASES])
def test_the_batch_command_refuses_a_model_that_does_not_match_before_unpickling(deployed_files, tamper, tmp_path):
    command = ["-m", "src.serving.predict", "--input", str(deployed_files.rows_csv), "--output", "OUTPUT"]
    _refused_untouched(deployed_files, command, tamper, tmp_path, "predict: error: ")


@pytest.mark.long
@pytest.mark.parametrize(
    "tamper", [_code_in_the_model, _code_vouched_for_by_the_lock], ids=["manifest only", "manifest and dvc.lock"]
)
def test_the_evaluate_stage_never_runs_a_pickle_that_only_the_manifest_vouches_for(deployed_files, tmp_path, tamper):
    _refused_untouched(deployed_files, ["-m", "src.pipeline.evaluate"], tamper, tmp_path, "evaluate: error: ")


# --- the batch command ---------------------------------------------------------------------


def _bad_rows(rows: Path, folder: Path) -> tuple[Path, Path, list[str]]:
    name = ADAPTER.numeric[0]
    frame = pd.read_csv(rows, dtype=str)
    frame.loc[[1, 4], name] = "not a number"  # data rows 1 and 4: CSV lines 3 and 6
    path = folder / "bad.csv"
    frame.to_csv(path, index=False)
    return path, folder / "out.csv", [name, "CSV lines 3, 6"]


def _empty_file(rows: Path, folder: Path) -> tuple[Path, Path, list[str]]:
    (folder / "empty.csv").write_bytes(b"")
    return folder / "empty.csv", folder / "out.csv", ["empty.csv", "is empty"]


def _directory_output(rows: Path, folder: Path) -> tuple[Path, Path, list[str]]:
    (folder / "results").mkdir()
    return rows, folder / "results", ["results", "is a directory"]


def _no_id_column(rows: Path, folder: Path) -> tuple[Path, Path, list[str]]:
    path = folder / "no-id.csv"
    pd.read_csv(rows, dtype=str).drop(columns=ADAPTER.id).to_csv(path, index=False)
    return path, folder / "out.csv", [f"lacks the id column {ADAPTER.id!r}"]


BATCH_CASES = [
    ("bad values in rows", _bad_rows),
    ("an empty input file", _empty_file),
    ("a directory as --output", _directory_output),
    ("rows without the id column", _no_id_column),
]


@pytest.mark.long
@pytest.mark.parametrize("case", [case[1] for case in BATCH_CASES], ids=[case[0] for case in BATCH_CASES])
def test_the_batch_command_refuses_bad_input_and_writes_nothing(repo, case, tmp_path):
    source, output, expected = case(repo.rows_csv, tmp_path)
    before = sorted(tmp_path.rglob("*"))
    result = repo.python("-m", "src.serving.predict", "--input", str(source), "--output", str(output))
    assert result.returncode != 0
    assert result.stderr.startswith("predict: error: ") and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert sorted(tmp_path.rglob("*")) == before, "the command wrote a file"
    assert_old_or_absent(repo.root, repo.baseline)


# --- data versions ----------------------------------------------------------------------------


def _git(root: Path, *args: str) -> str:
    return run(["git", *args], cwd=root).stdout.strip()


DATA_VERSION_CASES = [
    ("restore a REF that does not exist", None, ["restore", "no-such-ref"], ["'no-such-ref'", "data versions"]),
    ("restore a missing tag", None, ["restore", "data/1999-01-01"], ["'data/1999-01-01'", "git fetch --tags"]),
    ("restore with uncommitted changes", "dirty", ["restore", "HEAD"], ["uncommitted changes", "params.yaml"]),
    (
        "cut a version whose tag exists",
        "tag",
        ["cut", "2014-01-31"],
        ["data/2014-01-31 already exists", "make data-restore REF=data/2014-01-31"],
    ),
]


@pytest.mark.long
@pytest.mark.parametrize(
    "setup, args, expected", [case[1:] for case in DATA_VERSION_CASES], ids=[case[0] for case in DATA_VERSION_CASES]
)
def test_a_data_version_mistake_moves_nothing(repo, setup, args, expected):
    root = repo.root
    if setup == "dirty":
        with (root / "params.yaml").open("a", encoding="utf-8") as handle:
            handle.write("# an uncommitted edit\n")
    if setup == "tag":
        run(["git", "tag", "-a", "data/2014-01-31", "-m", "an existing version"], cwd=root)
    head, tags = _git(root, "rev-parse", "HEAD"), _git(root, "tag", "--list")
    try:
        result = repo.python("-m", "src.tools.data_version", *args)
        assert _git(root, "tag", "--list") == tags
    finally:
        if setup == "tag":
            run(["git", "tag", "-d", "data/2014-01-31"], cwd=root)
    assert result.returncode != 0
    assert result.stderr.startswith("data-version: error: ") and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert _git(root, "rev-parse", "HEAD") == head
    assert not _git(root, "worktree", "list").count("\n"), "a temporary worktree was left"
    assert_old_or_absent(root, repo.baseline)


# --- HTTP ------------------------------------------------------------------------------------------


def _row(rows: pd.DataFrame) -> dict:
    return as_json_rows(rows.drop(columns=ADAPTER.target).head(1))[0]


def _plain_text(row: dict) -> tuple[bytes, dict]:
    return json.dumps({"rows": [row]}).encode(), {"content-type": "text/plain"}


def _no_content_type(row: dict) -> tuple[bytes, dict]:
    return json.dumps({"rows": [row]}).encode(), {}


def _lone_surrogate(row: dict) -> tuple[bytes, dict]:
    row = dict(row, **{ADAPTER.categorical[0]: "SURROGATE"})
    return json.dumps({"rows": [row]}).replace("SURROGATE", "\\ud800").encode(), {"content-type": "application/json"}


def _missing_field(row: dict) -> tuple[bytes, dict]:
    row = {key: value for key, value in row.items() if key != ADAPTER.numeric[0]}
    return json.dumps({"rows": [row]}).encode(), {"content-type": "application/json"}


def _text_for_a_number(row: dict) -> tuple[bytes, dict]:
    body = {"rows": [dict(row, **{ADAPTER.numeric[0]: "abc"})]}
    return json.dumps(body).encode(), {"content-type": "application/json"}


def _no_rows(row: dict) -> tuple[bytes, dict]:
    return b'{"rows": []}', {"content-type": "application/json"}


def _broken_json(row: dict) -> tuple[bytes, dict]:
    return b'{"rows": [', {"content-type": "application/json"}


def _too_large(row: dict) -> tuple[bytes, dict]:
    return json.dumps({"rows": [row] * 400}).encode(), {"content-type": "application/json"}


def _too_many_rows(row: dict) -> tuple[bytes, dict]:
    return json.dumps({"rows": [row] * (MAX_ROWS + 1)}).encode(), {"content-type": "application/json"}


# Limits small enough to reach: one row of any adapter fits, 400 rows do not.
MAX_BYTES, MAX_ROWS = 16384, 3


# (case, the request body and headers, status, what the answer must name)
HTTP_CASES = [
    ("a text/plain body", _plain_text, 415, ["application/json", "text/plain"]),
    ("no Content-Type", _no_content_type, 415, ["application/json"]),
    ("a lone surrogate in a category", _lone_surrogate, 422, ["surrogate"]),
    ("a missing field", _missing_field, 422, [ADAPTER.numeric[0]]),
    ("text for a number", _text_for_a_number, 422, [ADAPTER.numeric[0]]),
    ("no rows", _no_rows, 422, ["rows"]),
    ("JSON cut short", _broken_json, 422, ["JSON"]),
    ("a body over the size limit", _too_large, 413, ["Too Large"]),
    ("more rows than the limit", _too_many_rows, 413, [f"{MAX_ROWS + 1} rows exceed the limit of {MAX_ROWS}"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "body, status, expected", [case[1:] for case in HTTP_CASES], ids=[case[0] for case in HTTP_CASES]
)
def test_the_service_answers_a_bad_request_with_a_4xx_naming_it(tmp_path, body, status, expected):
    if body is _lone_surrogate and not ADAPTER.categorical:
        pytest.skip("the adapter has no categorical features")
    deployed, rows = tiny_deployed(tmp_path / "model", 2)
    files_before = {path: path.read_bytes() for path in (tmp_path / "model").rglob("*") if path.is_file()}
    app = serve.create_app(deployed, max_rows=MAX_ROWS, max_bytes=MAX_BYTES)
    client = TestClient(app, raise_server_exceptions=False)  # a crash must show as the 500 a caller gets
    content, headers = body(_row(rows))
    response = client.post("/predict", content=content, headers=headers)
    assert response.status_code == status, response.text
    for text in expected:
        assert text in response.text, response.text
    assert client.get("/health").status_code == 200  # still serving, the same model
    assert {path: path.read_bytes() for path in (tmp_path / "model").rglob("*") if path.is_file()} == files_before


# --- the matrix itself ----------------------------------------------------------------------


def test_the_check_params_stage_comes_first_and_checks_the_whole_params_file():
    stages = yaml.safe_load((config.ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert STAGES[0] == "check_params"
    assert "params.yaml" in stages["check_params"]["deps"]
    assert [next(iter(out)) if isinstance(out, dict) else out for out in stages["check_params"]["outs"]] == [MARKER]
    # DVC orders stages by their files: the first stage that deletes outputs waits for the marker.
    assert MARKER in stages[STAGES[1]]["deps"]
    assert (config.ROOT / MARKER).read_text(encoding="utf-8") == check_params.MARKER_TEXT


def test_make_repro_checks_params_before_dvc_runs():
    recipe = run(
        ["make", "-n", "-o", ".venv/.installed-from-lock", "-o", rel(config.SOURCE_DB), "repro"],
        cwd=config.ROOT,
        check=False,
    ).stdout.splitlines()
    check = next(index for index, line in enumerate(recipe) if "src.pipeline.check_params --check" in line)
    repro = next(index for index, line in enumerate(recipe) if "dvc repro" in line)
    assert check < repro
