"""Experiments shared across machines with DVC's own mechanism: `dvc exp push` and `dvc exp pull`.

Two clones stand for two machines. They share a bare git repository (their
`origin`) and a DVC remote in a local directory. Clone A runs two cheap
experiments on an early snapshot (a moment of the active adapter's source
history: tests/history_dates.py) and pushes them; clone B, which has never
run a stage, pulls them, lists both with their metrics, applies one and gets
every output byte-identical to clone A's from the remote alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from src.pipeline import config, lockfile
from src.tools.exps import headline_metrics
from src.tools.git import git, git_succeeds
from tests.conftest import make_clone, require_source, run
from tests.dvc_helpers import lock_outputs, output_hashes
from tests.history_dates import early_moments

pytestmark = pytest.mark.long

# An early snapshot keeps both runs cheap; the code path is the full pipeline's.
# The moment's rank (for the example: 2013-01-31; a shorter history gives its last).
AS_OF_RANK = 28
HGB = "train.hist_gradient_boosting"
EXPERIMENTS = {"share-fast": 5, "share-slower": 10}  # name -> max_iter
METRICS = "eval/metrics.json"


def machine(base: Path, name: str, origin: Path, storage: Path) -> Path:
    """A clone of `origin` whose DVC remote is the shared directory (set in the git-ignored config.local)."""
    root = make_clone(base / name, repo=origin)
    run(["dvc", "remote", "modify", "--local", "storage", "url", str(storage)], root)
    return root


def experiments(root: Path) -> dict[str, dict]:
    """Experiment name -> its `dvc exp show --json` data (params, metrics), for the clone's HEAD."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], root).stdout)
    found = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for revision in experiment.get("revs") or []:
                if revision.get("name"):
                    found[revision["name"]] = revision.get("data") or {}
    return found


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    require_source()
    [as_of] = early_moments(AS_OF_RANK)
    base = tmp_path_factory.mktemp("exp-share")
    origin, storage = base / "origin.git", base / "storage"
    git(["clone", "-q", "--bare", str(config.ROOT), str(origin)], base)
    a = machine(base, "a", origin, storage)
    for name, max_iter in EXPERIMENTS.items():
        run(["dvc", "exp", "run", "-n", name, "-S", f"gather.as_of={as_of}", "-S", f"{HGB}.max_iter={max_iter}"], a)
    # A's workspace now holds the last experiment's outputs: the bytes B must get back.
    last = list(EXPERIMENTS)[-1]
    a_hashes, a_lock = output_hashes(a), (a / "dvc.lock").read_bytes()
    pushed = run(["dvc", "exp", "push", "origin"], a)
    b = machine(base, "b", origin, storage)
    before = experiments(b)
    pulled = run(["dvc", "exp", "pull", "origin"], b)
    return SimpleNamespace(
        a=a,
        b=b,
        last=last,
        a_hashes=a_hashes,
        a_lock=a_lock,
        before=before,
        pushed=pushed.stdout,
        pulled=pulled.stdout,
        storage=storage,
    )


def test_pulled_experiments_are_listed_with_their_metrics(shared):
    assert shared.before == {}, "clone B saw experiments before pulling any"
    listed = experiments(shared.b)
    assert set(EXPERIMENTS) <= set(listed), shared.pulled
    a_listed = experiments(shared.a)
    for name, max_iter in EXPERIMENTS.items():
        params = listed[name]["params"]["params.yaml"]["data"]
        assert params["train"]["hist_gradient_boosting"]["max_iter"] == max_iter
        metrics = listed[name]["metrics"][METRICS]["data"]
        headline = headline_metrics(metrics)  # the task's own: binary and multiclass metrics differ
        assert headline and all(isinstance(metrics[key], float) for key in headline), metrics
        # The same numbers the machine that ran them shows.
        assert metrics == a_listed[name]["metrics"][METRICS]["data"]
    assert listed["share-fast"]["metrics"] != listed["share-slower"]["metrics"]


def test_apply_then_pull_gives_clone_a_bytes(shared):
    b = shared.b
    # B never ran a stage: nothing cached is in its workspace before the apply.
    cached = [output for output in lock_outputs(b) if git_succeeds(["check-ignore", "-q", output], b)]
    assert cached, "no cached output in dvc.lock: the comparison would prove little"
    assert not any((b / output).exists() for output in cached)
    run(["dvc", "exp", "apply", shared.last], b)
    run(["dvc", "pull"], b)
    run(["dvc", "checkout"], b)
    assert (b / "dvc.lock").read_bytes() == shared.a_lock
    hashes = output_hashes(b)
    assert hashes == shared.a_hashes
    assert "missing" not in hashes.values()
    # Every cached output of the experiment is on the shared remote: A's `dvc exp push` put it there.
    lock = lockfile.read_dvc_lock(b / "dvc.lock")
    # The remote stores an object as <first two hex digits>/<the rest> (".dir" kept for directories).
    stored = {path.parent.name + path.name for path in shared.storage.rglob("*") if path.is_file()}
    assert {lockfile.locked_md5(lock, output) for output in cached} <= stored
