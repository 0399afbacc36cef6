"""`make verify`: rebuild a commit in a fresh clone and explain every difference.

The expensive tests rebuild for real: HEAD in full once, and the gather stage
alone (of a clone whose gather entry was just recorded) for the tampered source
and the one perturbed environment. The non-deterministic stage lives in a tiny
DVC repository of its own, which rebuilds in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from src.pipeline import config, lockfile
from src.pipeline.dataset import load_adapter
from src.pipeline.params import load_params
from src.pipeline.source import readers
from src.pipeline.source import scramble as scrambling
from src.pipeline.source.history import RECORDED_AT, VERSION_ID
from src.pipeline.source.url import parse_url
from src.tools.git import GitError, git, git_succeeds
from src.tools.venv import venv_env
from src.tools.verify import explain, format_table, id_column, lockdiff, rebuild, verify
from tests.conftest import make_clone, require_embedded_source, require_source, run
from tests.template.test_gather_validation import build_tiny_source

SNAPSHOT = str(config.SNAPSHOT.relative_to(config.ROOT))
ADAPTER, _ = load_adapter(load_params())


def by_path(report: dict, run_index: int = 0) -> dict[str, dict]:
    return {entry["path"]: entry for entry in report["runs"][run_index]["entries"]}


# --- pure parts ----------------------------------------------------------------

LOCK = """
schema: '2.0'
stages:
  make:
    cmd: python make.py
    deps:
    - path: make.py
      hash: md5
      md5: aaaa
      size: 1
    params:
      params.yaml:
        seed: 1
    outs:
    - path: data.parquet
      hash: md5
      md5: bbbb
      size: 2
  use:
    cmd: python use.py
    deps:
    - path: data.parquet
      hash: md5
      md5: bbbb
      size: 2
    outs:
    - path: result.json
      hash: md5
      md5: cccc
      size: 3
"""


def test_compare_lists_every_dep_param_and_out_and_marks_differences():
    committed = lockfile.parse_lock(LOCK)
    rebuilt = lockfile.parse_lock(LOCK.replace("cccc", "dddd"))
    entries = lockdiff.compare(committed, rebuilt)
    assert [(e.stage, e.kind, e.path, e.identical) for e in entries] == [
        ("make", "dep", "make.py", True),
        ("make", "param", "params.yaml:seed", True),
        ("make", "out", "data.parquet", True),
        ("use", "dep", "data.parquet", True),
        ("use", "out", "result.json", False),
    ]
    assert lockdiff.upstream(committed, ["make"]) == {"make"}
    assert lockdiff.upstream(committed, ["use"]) == {"make", "use"}
    with pytest.raises(ValueError, match="no stage \\['nope'\\]"):
        lockdiff.upstream(committed, ["nope"])


def test_parquet_explanation_names_columns_and_rows_aligned_on_the_id():
    key = ADAPTER.id
    old = pd.DataFrame({key: [1, 2, 3], "amount": [1.0, 2.0, None], "kind": ["a", "b", "c"]})
    new = old.iloc[::-1].copy()
    new.loc[new[key] == 2, "amount"] = 7.5
    details = explain.parquet_differences(old, new.reset_index(drop=True), key)
    assert details["columns"] == {"amount": {"rows": 1, "max_abs_difference": 5.5}}
    assert details["examples"] == [{key: 2, "column": "amount", "committed": 2.0, "rebuilt": 7.5}]
    reordered = explain.parquet_differences(old, old.iloc[::-1].reset_index(drop=True), key)
    assert reordered["same_rows_other_order"] and reordered["columns"] == {}


def test_rows_are_aligned_on_the_id_of_the_commits_adapter(tmp_path):
    assert id_column(config.ROOT) == ADAPTER.id
    assert id_column(tmp_path) is None  # no params.yaml: a bare DVC project


def test_json_explanation_lists_changed_values():
    result = explain.explain_json(b'{"auc": 0.75, "rows": {"test": 10}}', b'{"auc": 0.76, "rows": {"test": 10}}')
    assert result["details"]["changes"] == [
        {"key": "auc", "committed": 0.75, "rebuilt": 0.76, "difference": pytest.approx(0.01)}
    ]
    assert "auc: 0.75 -> 0.76" in result["summary"]


def test_variants_cover_threads_hashseed_tz_locale_path_and_row_order():
    names = {variant.name: variant for variant in rebuild.variants(vary=True, seed=1)}
    assert list(names) == [
        "default",
        "threads-1",
        "threads-2",
        "threads-4",
        "hashseed",
        "tz-locale",
        "path",
        "scramble",
    ]
    assert names["threads-4"].env == {
        config.THREADS_ENV: "4",
        "OMP_NUM_THREADS": "4",
        "OPENBLAS_NUM_THREADS": "4",
        "MKL_NUM_THREADS": "4",
    }
    assert set(names["tz-locale"].env) == {"TZ", "LC_ALL"}
    assert names["path"].elsewhere and names["scramble"].env == {config.SCRAMBLE_ENV: "1"}
    assert rebuild.other_locale("C.UTF-8", ["C", "C.utf8", "POSIX"]) == "POSIX"  # C.utf8 is C.UTF-8
    assert rebuild.other_locale("C.UTF-8", ["C", "C.utf8", "de_DE.utf8"]) == "de_DE.UTF-8"
    assert rebuild.other_locale(None, ["C", "C.utf8", "POSIX"]) == "C.UTF-8"
    assert rebuild.variants(vary=False) == [rebuild.Variant("default")]


def test_rebuild_environment_puts_the_venv_first_and_keeps_the_callers_source(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    base = {
        "PATH": "/usr/bin",
        "PYTHONHOME": "/elsewhere",
        config.SOURCE_URL_ENV: "sqlite:///other.sqlite",
        "VIRTUAL_ENV": "/stale",
    }
    env = venv_env(venv, base, TZ="UTC")
    assert env["PATH"] == f"{venv / 'bin'}{os.pathsep}/usr/bin"
    assert "PYTHONHOME" not in env and "VIRTUAL_ENV" not in env  # not a venv: no pyvenv.cfg
    assert env[config.SOURCE_URL_ENV] == "sqlite:///other.sqlite" and env["TZ"] == "UTC"
    assert base["PATH"] == "/usr/bin"  # the caller's mapping is left alone
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    env = venv_env(venv, base, **{config.SOURCE_URL_ENV: None})
    assert env["VIRTUAL_ENV"] == str(venv) and config.SOURCE_URL_ENV not in env


def test_git_errors_carry_gits_own_words(tmp_path):
    with pytest.raises(GitError) as caught:
        git(["rev-parse", "--verify", "no-such-rev"], tmp_path)  # not a repository either
    assert caught.value.returncode != 0 and "not a git repository" in caught.value.stderr
    assert str(tmp_path) in str(caught.value) and "git rev-parse" in str(caught.value)
    assert not git_succeeds(["rev-parse", "HEAD"], tmp_path)
    assert git(["rev-parse", "--show-toplevel"], config.ROOT) == str(config.ROOT)


def test_a_venv_is_reused_only_when_built_from_the_identical_lock(tmp_path):
    lock, stamp = tmp_path / "requirements.lock", tmp_path / "stamp"
    lock.write_text("numpy==2.4.6\n")
    assert not rebuild.venv_reusable(stamp, lock)
    stamp.write_text("numpy==2.4.5\n")
    assert not rebuild.venv_reusable(stamp, lock)
    stamp.write_text("numpy==2.4.6\n")
    assert rebuild.venv_reusable(stamp, lock)


# --- a tiny repository with a non-deterministic stage -------------------------

DVC_YAML = """\
stages:
  steady:
    cmd: python steady.py
    deps:
      - steady.py
    outs:
      - steady.json
  clock:
    cmd: python clock.py
    deps:
      - clock.py
    outs:
      - clock.json
"""
STEADY = "import json\njson.dump({'answer': 42}, open('steady.json', 'w'))\n"
# Deliberately non-deterministic: the moment it runs ends up in the output.
CLOCK = (
    "import json, os, sys, time\nif os.environ.get('TINY_FAIL'):\n    sys.exit('failing on purpose')\n"
    "json.dump({'answer': 42, 'written_at': time.time_ns()}, open('clock.json', 'w'))\n"
)


@pytest.fixture(scope="module")
def tiny_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed DVC project whose `clock` stage writes the current time, built once (tiny_repo copies it)."""
    repo = tmp_path_factory.mktemp("tiny") / "tiny"
    repo.mkdir()
    run(["git", "init", "-q"], cwd=repo)
    for name, value in (("user.email", "test@example.com"), ("user.name", "test")):
        run(["git", "config", name, value], cwd=repo)
    # The same lock as this checkout, so verify may reuse its venv (by the stamp).
    shutil.copy(config.ROOT / "requirements.lock", repo / "requirements.lock")
    (repo / ".venv").symlink_to(config.ROOT / ".venv")
    (repo / ".gitignore").write_text("/.venv\n")
    for name, text in (("dvc.yaml", DVC_YAML), ("steady.py", STEADY), ("clock.py", CLOCK)):
        (repo / name).write_text(text)
    run(["dvc", "init", "-q"], cwd=repo)
    run(["dvc", "repro", "-q"], cwd=repo)
    run(["git", "add", "-A"], cwd=repo)
    run(["git", "commit", "-q", "-m", "record"], cwd=repo)
    return repo


@pytest.fixture
def tiny_repo(tiny_built: Path, tmp_path: Path) -> Path:
    """A copy of tiny_built of this test's own (git history, DVC cache and the .venv link as built)."""
    return Path(shutil.copytree(tiny_built, tmp_path / "tiny", symlinks=True))


@pytest.mark.slow
def test_a_non_deterministic_stage_is_caught_and_its_output_named(tiny_repo, tmp_path):
    report_path = tmp_path / "report.json"
    result = run(
        [sys.executable, "-m", "src.tools.verify", "--repo", str(tiny_repo), "--report", str(report_path)],
        cwd=config.ROOT,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert report["identical"] is False and report["doctor"]["ok"], report["doctor"]
    entries = by_path(report)
    assert entries["steady.json"]["identical"]
    clock = entries["clock.json"]
    assert not clock["identical"]
    assert clock["explanation"]["details"]["changes"][0]["key"] == "written_at"
    assert "DVC cache" in clock["explanation"]["committed_from"]
    # The printed table names it too, as not identical, and the report's path is printed.
    assert any(
        line.startswith("clock") and "clock.json" in line and line.endswith("NO") for line in result.stdout.splitlines()
    ), result.stdout
    assert str(report_path) in result.stdout


@pytest.mark.slow
def test_a_committed_output_missing_from_the_cache_is_said_so(tiny_repo, tmp_path):
    lock = lockfile.read_dvc_lock(tiny_repo / "dvc.lock")
    digest = lock["stages"]["clock"]["outs"][0]["md5"]
    (tiny_repo / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]).unlink()
    report = verify(tiny_repo, report_path=tmp_path / "report.json", echo=lambda *_: None)
    clock = by_path(report)["clock.json"]
    assert not clock["identical"]
    assert "not in the DVC cache" in clock["explanation"]["summary"]
    assert "the hashes still differ" in clock["explanation"]["summary"]


@pytest.mark.slow
def test_a_failing_stage_is_not_mistaken_for_an_identical_one(tiny_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("TINY_FAIL", "1")
    report = verify(tiny_repo, report_path=tmp_path / "report.json", echo=lambda *_: None)
    assert report["runs"][0]["status"] != 0 and not report["identical"]
    assert "failing on purpose" in report["runs"][0]["log_tail"]
    clock = by_path(report)["clock.json"]
    assert clock["rebuilt"] is None and "did not run" in clock["explanation"]["summary"]


@pytest.mark.slow
def test_an_unknown_revision_is_named(tiny_repo):
    result = run(
        [sys.executable, "-m", "src.tools.verify", "--repo", str(tiny_repo), "--rev", "no-such-tag"],
        cwd=config.ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert "'no-such-tag' is not a commit or tag" in result.stderr


# --- the real pipeline ----------------------------------------------------------


@pytest.fixture(scope="module")
def recorded_gather(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of HEAD whose gather entry in dvc.lock was just recorded and committed.

    The snapshot is then in the clone's DVC cache, and the test does not depend
    on whether HEAD's own dvc.lock is up to date with its code.
    """
    require_source()
    repo = make_clone(tmp_path_factory.mktemp("gather") / "clone")
    run(["dvc", "repro", "--force", "--single-item", "gather"], cwd=repo)
    # --allow-empty: when HEAD's lock is already current there is nothing to record.
    run(["git", "commit", "-q", "--allow-empty", "-m", "record gather", "dvc.lock"], cwd=repo)
    return repo


def _entity_table() -> sa.Table:
    """The adapter's source table keyed by its id: the history the snapshot's rows come from."""
    return ADAPTER.source_tables.tables[ADAPTER.entity_table]


@pytest.mark.long
def test_a_rewritten_source_history_is_reported_as_such(recorded_gather, tmp_path):
    table = _entity_table()
    # A float column the snapshot copies as is: 999 fits it, and no join depends on it.
    column = next(
        (
            c.name
            for c in table.c
            if c.name in ADAPTER.snapshot_schema.names
            and c.name != ADAPTER.id
            and pa.types.is_floating(ADAPTER.snapshot_schema.field(c.name).type)
        ),
        None,
    )
    if column is None or VERSION_ID not in table.c or RECORDED_AT not in table.c:
        pytest.skip(f"source table {table.name} has no float column or no history columns to rewrite")
    require_embedded_source()
    source = tmp_path / config.SOURCE_DB.name
    shutil.copy(config.SOURCE_DB, source)
    as_of = load_params(recorded_gather / "params.yaml").gather.moment
    engine = sa.create_engine(f"sqlite:///{source}")
    with engine.begin() as connection:
        # The version the snapshot reads for the first id: rewrite its history.
        first_id, version_id = connection.execute(
            sa.select(table.c[ADAPTER.id], table.c[VERSION_ID])
            .where(table.c[RECORDED_AT] <= as_of)
            .order_by(table.c[ADAPTER.id], table.c[RECORDED_AT].desc(), table.c[VERSION_ID].desc())
            .limit(1)
        ).one()
        connection.execute(sa.update(table).where(table.c[VERSION_ID] == version_id).values({column: 999}))
    engine.dispose()
    report_path = tmp_path / "report.json"
    result = run(
        [
            sys.executable,
            "-m",
            "src.tools.verify",
            "--repo",
            str(recorded_gather),
            "--target",
            "gather",
            "--report",
            str(report_path),
        ],
        cwd=config.ROOT,
        check=False,
        **{config.SOURCE_URL_ENV: f"sqlite:///{source}"},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    snapshot = by_path(json.loads(report_path.read_text()))[SNAPSHOT]
    assert not snapshot["identical"]
    explanation = snapshot["explanation"]
    assert explanation["summary"].startswith("the source's history was rewritten"), explanation["summary"]
    assert list(explanation["details"]["columns"]) == [column]
    assert explanation["details"]["columns"][column]["rows"] == 1
    assert explanation["details"]["examples"][0][ADAPTER.id] == first_id
    assert explanation["details"]["examples"][0]["rebuilt"] == 999
    assert "the source's history was rewritten" in result.stdout


def test_the_scramble_variant_reverses_what_gather_reads(monkeypatch, tmp_path):
    # The variant's environment, as the stage reads it, turns on the scramble
    # in the very connection gather reads through: an unordered SELECT comes back reversed.
    scramble = next(variant for variant in rebuild.variants(vary=True) if variant.name == "scramble")
    for name, value in scramble.env.items():
        monkeypatch.setenv(name, value)
    assert scrambling.requested()
    url = f"sqlite:///{build_tiny_source(tmp_path / 'tiny.sqlite', entities=5)}"
    query = f"SELECT {ADAPTER.id} FROM {ADAPTER.entity_table}"

    def unordered(scramble: bool) -> list[int]:
        with readers.arrow_connection(parse_url(url), scramble=scramble) as connection, connection.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetch_arrow_table().column(0).to_pylist()

    plain = unordered(scramble=False)
    assert len(set(plain)) > 1 and unordered(scramble=scrambling.requested()) == plain[::-1]


@pytest.mark.long
def test_gather_is_identical_with_sqlite_rows_in_reverse_order(recorded_gather, tmp_path):
    scramble = [variant for variant in rebuild.variants(vary=True) if variant.name == "scramble"]
    report = verify(
        recorded_gather, runs=scramble, targets=["gather"], report_path=tmp_path / "report.json", echo=lambda *_: None
    )
    assert report["runs"][0]["env"] == {config.SCRAMBLE_ENV: "1"}
    # The variant reached the stage (test_the_scramble_variant_reverses_what_gather_reads
    # shows what it then does to the rows), and the bytes did not move.
    assert f"gather: {config.SCRAMBLE_ENV}=1: SQLite returns unordered rows in reverse" in report["runs"][0]["log_tail"]
    assert report["identical"], format_table(report)
    # gather and what it depends on (the params check), nothing downstream.
    assert {entry["stage"] for entry in report["runs"][0]["entries"]} == {"check_params", "gather"}


@pytest.mark.long
def test_verify_passes_on_head(tmp_path):
    """The promise itself: HEAD rebuilds bit for bit in a fresh clone (through the CLI `make verify` runs)."""
    report_path = tmp_path / "report.json"
    result = run(
        [sys.executable, "-m", "src.tools.verify", "--rev", "HEAD", "--report", str(report_path)],
        cwd=config.ROOT,
        check=False,
    )
    report = json.loads(report_path.read_text())
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert report["identical"] and report["doctor"]["ok"]
    stages = {entry["stage"] for entry in report["runs"][0]["entries"]}
    assert {"gather", "featurize", "train", "evaluate"} <= stages
