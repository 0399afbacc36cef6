"""End to end: a fresh clone of HEAD rebuilds every output bit for bit.

`--force` so that DVC's run-cache cannot restore outputs without running the
stages, which would hide any non-determinism.
"""
from __future__ import annotations

import random

import yaml

from tests.conftest import run


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
    assert diff.returncode == 0, f"the rebuild changed committed files:\n{diff.stdout}\n" + run(
        ["git", "diff", "dvc.lock"], cwd=clone, check=False).stdout[:4000]
    status = run(["dvc", "status"], cwd=clone)
    assert "up to date" in status.stdout, status.stdout
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    assert list(lock["stages"]) == ["gather", "featurize", "train", "evaluate"]


def test_bad_params_stop_a_stage_with_the_key_named(clone):
    params = clone / "params.yaml"
    params.write_text(params.read_text().replace("max_iter: 200", 'max_iter: "200"'))
    result = run(["python", "-m", "src.pipeline.train"], cwd=clone, check=False)
    assert result.returncode != 0
    assert "train.hist_gradient_boosting.max_iter" in result.stderr and "Traceback" not in result.stderr
    assert not (clone / "models" / "model.pkl").exists()


def test_gather_before_any_data_fails_cleanly(clone):
    params = clone / "params.yaml"
    text = params.read_text()
    assert "as_of: '2014-01-31'" in text
    params.write_text(text.replace("as_of: '2014-01-31'", "as_of: '2012-01-01'"))
    result = run(["python", "-m", "src.pipeline.gather"], cwd=clone, check=False)
    assert result.returncode != 0 and "empty" in result.stderr and "Traceback" not in result.stderr
    assert not list((clone / "data").glob("snapshot/*.parquet"))
