"""End to end: a fresh clone of HEAD rebuilds every output bit for bit, and stages fail cleanly.

`--force` so that DVC's run-cache cannot restore outputs without running the
stages, which would hide any non-determinism.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from src.pipeline import config
from tests.conftest import run

STAGES = ["check_params", "gather", "featurize", "check_recorded", "train", "evaluate"]


def edit_params(clone: Path, change) -> None:
    """Change the clone's params.yaml through its parsed values (whatever they are now)."""
    path = clone / config.PARAMS_FILE.name
    raw = yaml.safe_load(path.read_text())
    change(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.mark.slow(minutes=True)
def test_fresh_clone_reproduces_dvc_lock_under_another_environment(clone):
    perturbed = dict(
        PYTHONHASHSEED=str(random.randrange(1, 2**32)),
        TZ="Pacific/Auckland",
        LC_ALL="C.UTF-8",
        OMP_NUM_THREADS="2",
        OPENBLAS_NUM_THREADS="2",
        MKL_NUM_THREADS="2",
    )
    run(["make", "repro", "REPRO_FLAGS=--force"], cwd=clone, **perturbed)
    diff = run(["git", "diff", "--exit-code", "--stat"], cwd=clone, check=False)
    assert diff.returncode == 0, (
        f"the rebuild changed committed files:\n{diff.stdout}\n"
        + run(["git", "diff", "dvc.lock"], cwd=clone, check=False).stdout[:4000]
    )
    status = run(["dvc", "status"], cwd=clone)
    assert "up to date" in status.stdout, status.stdout
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    assert list(lock["stages"]) == STAGES


@pytest.mark.slow
def test_bad_params_stop_a_stage_with_the_key_named(clone):
    def quote_max_iter(raw):
        section = raw["train"]["hist_gradient_boosting"]
        section["max_iter"] = str(section["max_iter"])  # "200" for 200: strict types refuse it

    edit_params(clone, quote_max_iter)
    result = run(["python", "-m", "src.pipeline.train"], cwd=clone, check=False)
    assert result.returncode != 0
    assert "train.hist_gradient_boosting.max_iter" in result.stderr and "Traceback" not in result.stderr
    assert not (clone / config.MODEL.relative_to(config.ROOT)).exists()


@pytest.mark.slow
def test_gather_before_any_data_fails_cleanly(clone):
    edit_params(clone, lambda raw: raw["gather"].update(as_of="1900-01-01"))
    result = run(["python", "-m", "src.pipeline.gather"], cwd=clone, check=False)
    assert result.returncode != 0 and "empty" in result.stderr and "Traceback" not in result.stderr
    snapshot = clone / config.SNAPSHOT.relative_to(config.ROOT)
    assert not list(snapshot.parent.glob("*.parquet")) and not list(snapshot.parent.glob(".*.tmp"))
