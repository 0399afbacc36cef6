"""Hyperparameter sweeps: `dvc exp run --queue` + `dvc queue start -j 2`, in a temporary clone.

The clone's baseline is a small early snapshot (cheap runs, same code path),
at a moment of the active adapter's source history (tests/history_dates.py).
Five queued experiments cover every train hyperparameter and every model,
stacking included, with cheap values. Each must succeed in DVC's temporary
copy, where the git-ignored source database does not exist: gather and
featurize have to be restored from the cache, not re-run. A sixth moves
`gather.as_of` to an earlier moment, so gather runs in the copy: with SOURCE_URL
unset it must find the main project's embedded source by itself (with SOURCE_URL
set, as for a fork whose source is a database server, it reads that). Then each
is rebuilt by `dvc repro --force` at its params, and the two dvc.lock files must
agree.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from src.pipeline import config, lockfile
from src.tools.exps import MAX_TEST_METRICS, headline_metrics, validation_metric
from tests.conftest import make_clone, project_env, require_source, run
from tests.history_dates import early_moments

HGB, LR, RF = "train.hist_gradient_boosting", "train.logistic_regression", "train.random_forest"
MLP = "train.mlp"
SWEEP = {
    "hgb-fast": [f"{HGB}.learning_rate=0.3", f"{HGB}.max_iter=5"],
    "hgb-small-leaves": [
        f"{HGB}.learning_rate=0.05",
        f"{HGB}.max_iter=10",
        f"{HGB}.max_leaf_nodes=15",
        f"{HGB}.min_samples_leaf=10",
        f"{HGB}.l2_regularization=0.5",
        "train.impute_strategy=mean",
    ],
    "logistic": ["train.model=logistic_regression", f"{LR}.C=0.5", f"{LR}.max_iter=50", "train.cv_folds=3"],
    "mlp": [
        "train.model=mlp",
        f"{MLP}.hidden_layer_sizes=[8]",
        f"{MLP}.alpha=0.001",
        f"{MLP}.learning_rate_init=0.01",
        f"{MLP}.batch_size=128",
        f"{MLP}.max_iter=5",
        f"{MLP}.early_stopping=false",
        f"{MLP}.validation_fraction=0.2",
        f"{MLP}.n_iter_no_change=2",
    ],
    "forest": ["train.model=random_forest", f"{RF}.n_estimators=5", f"{RF}.max_depth=4", f"{RF}.min_samples_leaf=10"],
    "stacking": [
        "train.model=stacking",
        "train.stacking.estimators=[hist_gradient_boosting,random_forest]",
        "train.stacking.final_estimator=logistic_regression",
        "train.stacking.cv_folds=2",
        f"{HGB}.max_iter=5",
        f"{RF}.n_estimators=5",
    ],
}
# An upstream param (gather.as_of, set to an earlier moment in the fixture): gather and
# featurize run again in DVC's temporary copy.
UPSTREAM = "as-of"
EXPERIMENTS = {*SWEEP, UPSTREAM}
# Every train key is a hyperparameter (the thread count is the machine's: PIPELINE_THREADS).
# Feature selection refits the model once per feature ranking and once more, in every fold too
# (about 20 min on the example's data here): too slow to queue. test_selection.py proves its
# bytes the same at 1, 2 and 4 threads, through train.main, on tiny frames.
NOT_SWEPT: set[str] = {f"train.feature_selection.{key}" for key in ("method", "keep", "holdout", "repeats")}
QUEUE_TIMEOUT_S = 900


def leaves(node: object, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value of every leaf under `node` (the names `dvc exp show` gives params)."""
    if isinstance(node, dict):
        return {key: value for name, child in node.items() for key, value in leaves(child, f"{prefix}{name}.").items()}
    return {prefix[:-1]: node}


def leaf_keys(node: object, prefix: str) -> set[str]:
    return set(leaves(node, f"{prefix}."))


def start_workers(root: Path) -> None:
    # The workers outlive `dvc queue start` and keep its stdout open: don't capture it.
    # Their environment is the tests' own: SOURCE_URL only if the user set one.
    env = project_env()
    subprocess.run(
        ["dvc", "queue", "start", "-j", "2"],
        cwd=root,
        env=env,
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for_queue(root: Path) -> str:
    """Poll `dvc queue status` until nothing is queued or running; return the last status.

    Workers sometimes exit while tasks are still queued (dvc#10562). A user
    then runs `dvc queue start` again, and so does this, after the queue has
    sat with nothing running for three polls, instead of hanging to the timeout.
    """
    deadline = time.monotonic() + QUEUE_TIMEOUT_S
    idle_polls = 0
    while True:
        status = run(["dvc", "queue", "status"], root).stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        idle_polls = idle_polls + 1 if "Running" not in status else 0
        if idle_polls >= 3:
            start_workers(root)
            idle_polls = 0
        if time.monotonic() > deadline:
            run(["dvc", "queue", "stop", "--kill"], root, check=False)
            pytest.fail(f"the queue did not finish in {QUEUE_TIMEOUT_S} s:\n{status}")
        time.sleep(5)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    require_source()
    # For the example: 2013-01-15 and 2013-01-31; the earlier one has fewer rows.
    earlier, as_of = early_moments(12, 28)
    root = make_clone(tmp_path_factory.mktemp("sweeps") / "clone")
    # The baseline as a user would make it: a data version (params.yaml, dvc.lock and the
    # tracked outputs, committed and tagged), checked out with its data.
    run(["python", "-m", "src.tools.data_version", "cut", as_of, "--no-push"], root)
    run(["python", "-m", "src.tools.data_version", "restore", f"data/{as_of}"], root)
    for name, overrides in {**SWEEP, UPSTREAM: [f"gather.as_of={earlier}"]}.items():
        run(["dvc", "exp", "run", "--queue", "-n", name, *[arg for o in overrides for arg in ("-S", o)]], root)
    start_workers(root)
    try:
        status = wait_for_queue(root)
    finally:
        run(["dvc", "queue", "stop"], root, check=False)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], root).stdout)
    experiments = {exp["name"]: exp for baseline in shown for exp in baseline.get("experiments") or []}
    baseline = next(baseline for baseline in shown if baseline.get("experiments"))
    return SimpleNamespace(root=root, status=status, experiments=experiments, baseline=baseline, earlier=earlier)


def test_sweep_covers_every_train_hyperparameter():
    params = yaml.safe_load(config.PARAMS_FILE.read_text(encoding="utf-8"))
    swept = {override.split("=", 1)[0] for overrides in SWEEP.values() for override in overrides}
    assert leaf_keys(params["train"], "train") - NOT_SWEPT - swept == set(), "add the new key to SWEEP"
    assert not NOT_SWEPT - leaf_keys(params["train"], "train"), "NOT_SWEPT names a key params.yaml no longer has"
    assert {o.split("=", 1)[1] for v in SWEEP.values() for o in v if o.startswith("train.model=")} == {
        "logistic_regression",
        "random_forest",
        "mlp",
        "stacking",
    }  # the default covers hist_gradient_boosting


@pytest.mark.long
def test_queued_sweep_with_two_workers_succeeds(sweep):
    assert set(sweep.experiments) == EXPERIMENTS, sweep.status
    failed = {
        name: exp["executor"]
        for name, exp in sweep.experiments.items()
        if (exp.get("executor") or {}).get("state") != "success"
    }
    assert not failed, f"{failed}\n{sweep.status}"


@pytest.mark.long
@pytest.mark.parametrize("name", sorted(SWEEP))
def test_upstream_stages_are_restored_not_rerun(sweep, name):
    log = run(["dvc", "queue", "logs", name], sweep.root).stdout
    for stage in ("gather", "featurize"):
        assert f"Stage '{stage}' didn't change, skipping" in log
        assert f"Running stage '{stage}'" not in log
    assert "Running stage 'train'" in log


def _snapshot_rows(data: dict) -> int:
    return data["metrics"][config.FEATURIZE_SUMMARY.relative_to(config.ROOT).as_posix()]["data"]["snapshot_rows"]


@pytest.mark.long
def test_upstream_sweep_reads_the_source_from_the_experiment_copy(sweep):
    # The copy has no git-ignored source: with SOURCE_URL unset (the embedded
    # demo source), gather found the main project's; with it set, it read that.
    log = run(["dvc", "queue", "logs", UPSTREAM], sweep.root).stdout
    assert "Running stage 'gather'" in log and "Running stage 'featurize'" in log
    assert f" as of {sweep.earlier} -> " in log  # gather's own line: it read the source
    rows = _snapshot_rows(sweep.experiments[UPSTREAM]["revs"][0]["data"])
    assert 0 < rows < _snapshot_rows(sweep.baseline["data"])  # an earlier as_of: fewer rows, from the real source


@pytest.mark.long
def test_each_experiment_equals_dvc_repro_force_at_its_params(sweep):
    root = sweep.root
    for name, exp in sorted(sweep.experiments.items()):
        rev = exp["revs"][0]["rev"]
        (root / "params.yaml").write_text(run(["git", "show", f"{rev}:params.yaml"], root).stdout, encoding="utf-8")
        run(["dvc", "repro", "--force"], root)
        expected = lockfile.parse_lock(run(["git", "show", f"{rev}:dvc.lock"], root).stdout, f"{rev}:dvc.lock")
        rebuilt = lockfile.read_dvc_lock(root / "dvc.lock")
        assert rebuilt == expected, f"experiment {name} differs from `dvc repro --force` at its params"
        run(["git", "checkout", "--", "."], root)


@pytest.mark.long
def test_readme_recipes_show_sort_promote_and_diff(sweep):
    root = sweep.root
    # The recipe with the task's own first headline metric (roc_auc for the example's binary
    # target, roc_auc_ovr for more classes).
    first = headline_metrics(json.loads((root / config.METRICS.relative_to(config.ROOT)).read_text()))[0]
    metrics_path = config.METRICS.relative_to(config.ROOT).as_posix()
    table = run(
        ["dvc", "exp", "show", "--csv", "--sort-by", f"{metrics_path}:{first}", "--sort-order", "desc"], root
    ).stdout
    rows = [row for row in csv.DictReader(io.StringIO(table)) if row["Experiment"] in EXPERIMENTS]
    scores = [float(row[first]) for row in rows]
    assert len(rows) == len(EXPERIMENTS) and scores == sorted(scores, reverse=True)
    best = rows[0]["Experiment"]
    run(["dvc", "exp", "branch", best, "sweep-winner"], root)
    branch_params = yaml.safe_load(run(["git", "show", "sweep-winner:params.yaml"], root).stdout)
    run(["dvc", "exp", "apply", best], root)
    assert yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8")) == branch_params
    assert "Data and pipelines are up to date." in run(["dvc", "status"], root).stdout
    run(["dvc", "plots", "diff", rows[0]["Experiment"], rows[-1]["Experiment"], "-o", "sweep_plots"], root)
    assert (root / "sweep_plots" / "index.html").is_file()


@pytest.mark.long
def test_make_exps_shows_the_headline_metrics_and_the_swept_params(sweep):
    # `make exps`'s command, as CSV: it prints the command first, then the table.
    output = run(["python", "-m", "src.tools.exps", "--csv"], sweep.root).stdout
    rows = list(csv.DictReader(io.StringIO(output[output.index("Experiment,") :])))
    headline = headline_metrics(json.loads((sweep.root / config.METRICS.relative_to(config.ROOT)).read_text()))
    ranked_by = validation_metric(
        headline, json.loads((sweep.root / config.VALIDATION_METRICS.relative_to(config.ROOT)).read_text())
    )
    shown = [f"{ranked_by}.mean", f"{ranked_by}.std", *headline[:MAX_TEST_METRICS]]
    # The params whose values differ between the baseline and the experiments: the swept ones
    # (less those swept to their baseline value), never the recorded lists.
    params = [
        leaves(row["params"]["params.yaml"]["data"])
        for row in [sweep.baseline["data"], *(exp["revs"][0]["data"] for exp in sweep.experiments.values())]
    ]
    differ = {key for key in params[0] if len({repr(row.get(key)) for row in params}) > 1}
    assert "train.model" in differ and "gather.as_of" in differ
    assert set(rows[0]) == {"Experiment", *shown, *differ}
    assert list(rows[0])[0] == "Experiment" and set(list(rows[0])[1 : 1 + len(shown)]) == set(shown)  # metrics first
    # ranked by the validation estimate, not the test metric
    scores = [float(row[f"{ranked_by}.mean"]) for row in rows if row["Experiment"] in EXPERIMENTS]
    assert len(scores) == len(EXPERIMENTS) and scores == sorted(scores, reverse=True)
