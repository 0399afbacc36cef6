"""The template ported to a regression: the Palmer penguins' body mass, in a clone of HEAD.

tests/port/penguin_mass/ is the adapter a forker writes (a float target, so
Adapter.task is a regression; species, island and sex as categoricals). In a
clone: the package copied in, params.yaml pointed at it, the penguins CSV
ingested, `make categories` (it records no classes), `dvc repro`, a commit, and
`dvc repro --force`, which must leave dvc.lock byte for byte. Then the outputs
a regression promises: its metrics on the test set and the folds, predictions
[id, prediction] that the batch command repeats, and a plots page that draws.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from sklearn import metrics

from src.pipeline import config
from src.tools.clones import working_clone
from tests.conftest import run
from tests.port.porting import PORT, RECORDED_AT, _penguins_csv, _port_params, _with_id_column

pytestmark = pytest.mark.long

NAME = "penguin_mass"
REGRESSION_METRICS = ["rmse", "mae", "r2", "median_absolute_error"]


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("regression_port")
    clone = working_clone(base / "clone", venv=config.VENV, source_dir=None)
    shutil.copytree(PORT / NAME, clone / "src" / "datasets" / NAME, ignore=shutil.ignore_patterns("__pycache__"))
    params = clone / "params.yaml"
    params.write_text(_port_params(params.read_text(encoding="utf-8"), NAME), encoding="utf-8")
    csv = _with_id_column(_penguins_csv(), base / "penguins.csv")
    run(
        [
            sys.executable,
            "-m",
            "src.tools.ingest",
            str(csv),
            "--table",
            "penguins",
            "--id",
            "penguin_id",
            "--recorded-at",
            RECORDED_AT,
        ],
        cwd=clone,
    )
    recorded = run([sys.executable, "-m", "src.tools.categories"], cwd=clone)
    assert "no classes: a regression" in recorded.stdout, recorded.stdout
    run(["dvc", "repro"], cwd=clone)
    run(["git", "add", "--all"], cwd=clone)
    run(["git", "commit", "-q", "-m", "Port to the penguins' body mass"], cwd=clone)
    return clone


def test_make_categories_records_the_categoricals_and_no_classes(port):
    params = yaml.safe_load((port / "params.yaml").read_text(encoding="utf-8"))
    assert params["classes"] == []
    assert params["categories"] == {
        "species": ["Adelie", "Chinstrap", "Gentoo"],
        "island": ["Biscoe", "Dream", "Torgersen"],
        "sex": ["female", "male"],
    }


def test_a_forced_rerun_leaves_dvc_lock_byte_for_byte(port):
    before = (port / "dvc.lock").read_bytes()
    run(["dvc", "repro", "--force"], cwd=port)
    assert (port / "dvc.lock").read_bytes() == before
    run(["git", "diff", "--exit-code", "--", "dvc.lock"], cwd=port)


def test_the_regressions_metrics_predictions_and_service_output(port):
    scores = json.loads((port / "eval" / "metrics.json").read_text(encoding="utf-8"))
    validation = json.loads((port / "metrics" / "validation.json").read_text(encoding="utf-8"))
    print(
        "\npenguin body mass (g), test: "
        + ", ".join(f"{name} {scores[name]:.4f}" for name in REGRESSION_METRICS)
        + f" on {scores['rows']['test']} rows; validation rmse {validation['rmse']['mean']:.2f} "
        f"+- {validation['rmse']['std']:.2f}"
    )
    assert [name for name in scores if name in REGRESSION_METRICS] == REGRESSION_METRICS
    assert all(set(validation[name]) == {"mean", "std"} for name in REGRESSION_METRICS)
    # The species and sex explain most of a penguin's mass: far better than its mean.
    assert scores["r2"] > 0.7 and validation["r2"]["mean"] > 0.7

    predictions_path = port / "data" / "predictions" / "test.parquet"
    assert pq.read_schema(predictions_path).names == ["penguin_id", "prediction"]
    predicted = pd.read_parquet(predictions_path)
    test = pd.read_parquet(port / "data" / "features" / "test.parquet")
    assert predicted["penguin_id"].tolist() == test["penguin_id"].tolist()
    assert scores["rmse"] == round(metrics.root_mean_squared_error(test["body_mass_g"], predicted["prediction"]), 12)

    # The batch command gives the evaluate stage's values, byte for byte.
    run(
        [
            sys.executable,
            "-m",
            "src.serving.predict",
            "--input",
            "data/features/test.parquet",
            "--output",
            str(port / "batch.parquet"),
        ],
        cwd=port,
    )
    pd.testing.assert_frame_equal(pd.read_parquet(port / "batch.parquet"), predicted, check_exact=True)

    # The plots page draws the regression's plots; the classes' plots are absent, and DVC still exits 0.
    shown = run(["dvc", "plots", "show", "-o", str(port / "plots")], cwd=port)
    page = (port / "plots" / "index.html").read_text(encoding="utf-8")
    for plot in ("Predicted-Actual", "Residuals", "Feature-Importance"):  # dvc.yaml's ids, each with its data
        assert f"vegaEmbed('#{plot}', spec);" in page, plot
    assert '"actual": ' in page and '"residual": ' in page
    assert "perfect prediction" in page and "no error" in page
    print(shown.stderr.strip())
