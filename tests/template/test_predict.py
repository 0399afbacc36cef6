"""Deployment: the batch command and Python API give the evaluate stage's bytes, or refuse.

The first tests use tiny models (two and three classes) deployed from their
manifests. The `slow` ones use a model built by the real pipeline (the
session's `reproduced` clone); tests that tamper with artifacts work on copies
laid out as the Docker image has them (models/, dvc.lock, params.yaml side by side).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from src.pipeline import artifact, config, files
from src.pipeline.adapter import Domain, Inputs
from src.pipeline.predictions import predictions_frame
from src.serving import predict
from src.serving.contract import Contract, ContractError, RawContract
from tests.conftest import run
from tests.template import frames
from tests.template.frames import ADAPTER, UNSEEN

TEST_FEATURES = config.TEST_FEATURES.relative_to(config.ROOT).as_posix()
SAVED_PREDICTIONS = config.PREDICTIONS.relative_to(config.ROOT).as_posix()
DEPLOYED_FILES = [
    path.relative_to(config.ROOT).as_posix()
    for path in (config.MODEL, config.MANIFEST, config.DVC_LOCK, config.PARAMS_FILE)
]


def tiny_deployed(
    tmp_path: Path, n_classes: int, model: str = "logistic_regression", threads: int = 1, **adapter_changes
):
    """A tiny model deployed from its saved files: (Deployed, its test rows)."""
    import dataclasses

    adapter = dataclasses.replace(ADAPTER, **adapter_changes) if adapter_changes else ADAPTER
    tmp_path.mkdir(parents=True, exist_ok=True)
    model_path, manifest_path, _ = frames.save(tmp_path, model, n_classes, adapter=adapter)
    loaded, manifest = artifact.load_model(model_path, manifest_path)
    deployed = predict.Deployed(loaded, manifest, frames.PARAMS.evaluate.threshold, threads)
    return deployed, frames.features(30, n_classes, seed=5, adapter=adapter)


def _probability_columns(frame: pd.DataFrame) -> list[str]:
    return [name for name in frame.columns if name.startswith("probability")]


@pytest.mark.slow
@pytest.mark.parametrize("n_classes", [2, 3])
def test_tiny_model_predictions_are_the_evaluate_stages_frame(tmp_path, n_classes):
    deployed, rows = tiny_deployed(tmp_path, n_classes)
    result = deployed.predict(rows)
    expected = predictions_frame(
        ADAPTER.id,
        rows[ADAPTER.id],
        deployed.model.predict_proba(rows[list(ADAPTER.features)]),
        deployed.classes,
        deployed.threshold,
    )
    pd.testing.assert_frame_equal(result.predictions, expected, check_exact=True)
    assert result.probabilities.shape == (len(rows), n_classes)
    assert result.ignored_columns == [ADAPTER.target]  # the target is no input
    if n_classes == 2:
        assert list(result.predictions.columns) == [ADAPTER.id, "probability", "label"]
    else:
        assert list(result.predictions.columns) == [
            ADAPTER.id,
            "label",
            *(f"probability_{c}" for c in deployed.classes),
        ]
        assert (
            result.predictions["label"].to_numpy() == np.asarray(deployed.classes)[result.probabilities.argmax(axis=1)]
        ).all()
    assert deployed.schema.names == list(result.predictions.columns)
    # without ids, no id column
    no_ids = deployed.predict(rows.drop(columns=ADAPTER.id)).predictions
    assert ADAPTER.id not in no_ids.columns and len(no_ids) == len(rows)


@pytest.mark.skipif(not ADAPTER.numeric, reason="the adapter has no numeric features")
def test_declared_ranges_are_enforced(tmp_path):
    # Ranges are the adapter's (by meaning) and reach serving through the manifest.
    low_only, both = ADAPTER.numeric[0], ADAPTER.numeric[-1]
    ranges = {low_only: (0, None), both: (-5, 5)}
    deployed, rows = tiny_deployed(tmp_path, 2, feature_ranges=ranges)
    assert deployed.contract.ranges == ranges
    rows = rows.assign(**{low_only: 1.0, both: 0.0})
    deployed.predict(rows)  # inside: accepted
    bad = rows.head(4).assign(**{both: [0.0, 5.0, 5.5, -6.0]})
    with pytest.raises(ContractError) as error:
        deployed.predict(bad)
    assert f"{both}: 5.5 outside the allowed range from -5 to 5 at rows 2, 3" in str(error.value)
    if low_only != both:
        with pytest.raises(ContractError, match=rf"{low_only}: -0.5 outside the allowed range of at least 0 at row 0"):
            deployed.predict(rows.head(1).assign(**{low_only: -0.5}))


def test_contract_comes_from_the_manifest_and_refuses_an_inconsistent_one(tmp_path):
    deployed, _ = tiny_deployed(tmp_path, 2)
    contract = Contract.from_manifest(deployed.manifest)
    assert contract.features == ADAPTER.features and contract.id == ADAPTER.id
    assert contract.categories == frames.categories()
    broken = {**deployed.manifest, "features": list(ADAPTER.features)[1:]}
    with pytest.raises(ContractError, match="exactly its categorical and numeric columns"):
        Contract.from_manifest(broken)


def test_a_contract_error_lists_every_problem_at_once(tmp_path):
    if len(ADAPTER.numeric) < 2:
        pytest.skip("needs two numeric features")
    deployed, rows = tiny_deployed(tmp_path, 2)
    first, second = ADAPTER.numeric[:2]
    frame = rows.head(3).assign(**{first: np.inf, second: "many"})
    with pytest.raises(ContractError) as error:
        deployed.predict(frame)
    assert f"{first}: infinite values" in str(error.value) and f"{second}: expected a number" in str(error.value)


# --- the model the real pipeline built ---------------------------------------


def deploy_copy(repo: Path, destination: Path) -> dict[str, Path]:
    """Copy what loading needs out of `repo`; return load_model's path arguments."""
    for name in DEPLOYED_FILES:
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / name, destination / name)
    return paths_in(destination)


def paths_in(repo: Path) -> dict[str, Path]:
    model, manifest, lock, params = (repo / name for name in DEPLOYED_FILES)
    return dict(model_path=model, manifest_path=manifest, lock_path=lock, params_path=params)


def load(repo: Path) -> predict.Deployed:
    return predict.load_model(**paths_in(repo))


def sample_rows(frame: pd.DataFrame, count: int = 10) -> pd.DataFrame:
    """About `count` rows spread over the frame, whatever its size."""
    positions = np.unique(np.linspace(0, len(frame) - 1, min(count, len(frame))).astype(int))
    return frame.iloc[positions].reset_index(drop=True)


@pytest.fixture(scope="module")
def deployed(reproduced) -> predict.Deployed:
    return load(reproduced)


@pytest.fixture(scope="module")
def test_rows(reproduced) -> pd.DataFrame:
    return pd.read_parquet(reproduced / TEST_FEATURES)


def relock(paths: dict[str, Path], name: str) -> None:
    """Record the current MD5 of models/`name` in the copy's dvc.lock, as a run would."""
    lock = yaml.safe_load(paths["lock_path"].read_text())
    digest = hashlib.md5((paths["lock_path"].parent / "models" / name).read_bytes()).hexdigest()
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == f"models/{name}":
                out["md5"] = digest
    paths["lock_path"].write_text(yaml.safe_dump(lock, sort_keys=False))


@pytest.mark.long
def test_batch_command_reproduces_the_evaluate_stage_byte_for_byte(reproduced, tmp_path):
    output = tmp_path / "predictions.parquet"
    result = run(
        ["python", "-m", "src.serving.predict", "--input", TEST_FEATURES, "--output", str(output)], cwd=reproduced
    )
    assert output.read_bytes() == (reproduced / SAVED_PREDICTIONS).read_bytes()
    assert f"ignored columns [{ADAPTER.target!r}]" in result.stderr  # the target is no input


@pytest.mark.long
def test_csv_in_any_column_order_gives_the_same_values(deployed, reproduced, test_rows, tmp_path):
    step = max(1, len(test_rows) // 200)
    rows = test_rows.iloc[::step]
    shuffled = rows[list(reversed(rows.columns))].assign(note="free text")
    shuffled.to_csv(tmp_path / "rows.csv", index=False)
    result = deployed.predict(predict.read_rows(tmp_path / "rows.csv", deployed.contract))
    saved = pd.read_parquet(reproduced / SAVED_PREDICTIONS).iloc[::step].reset_index(drop=True)
    # Exact float64 bits, not approximately equal.
    for column in _probability_columns(saved):
        assert np.array_equal(
            result.predictions[column].to_numpy().view(np.int64), saved[column].to_numpy().view(np.int64)
        ), column
    # as the batch command writes it: through the predictions schema (safe casts only)
    written = files.to_arrow(result.predictions, deployed.schema).to_pandas()
    pd.testing.assert_frame_equal(written, saved, check_exact=True)
    assert result.ignored_columns == [ADAPTER.target, "note"]  # as the caller ordered them


@pytest.mark.long
@pytest.mark.skipif(not ADAPTER.categorical, reason="the adapter has no categorical features")
def test_unknown_categories_go_to_the_bucket_and_are_counted(deployed, test_rows):
    first = ADAPTER.categorical[0]
    row = test_rows.head(1).drop(columns=[ADAPTER.id, ADAPTER.target])
    odd = pd.concat(
        [row.assign(**{first: UNSEEN}), row.assign(**{first: "QQ" + UNSEEN}), row.assign(**{first: None})],
        ignore_index=True,
    )
    result = deployed.predict(odd)
    assert result.unknown_categories[first] == {"unknown": 2, "missing": 1}
    for other in ADAPTER.categorical[1:]:
        missing = int(row[other].isna().sum()) * 3
        unknown = int((~row[other].isin(deployed.contract.categories[other]) & row[other].notna()).sum()) * 3
        assert result.unknown_categories[other] == {"unknown": unknown, "missing": missing}
    assert (result.probabilities == result.probabilities[0]).all()  # one bucket
    assert list(result.predictions.columns) == [n for n in deployed.schema.names if n != ADAPTER.id]  # no id given


def _at_row(frame: pd.DataFrame, column: str, value, row: int) -> pd.DataFrame:
    return frame.assign(**{column: frame[column].astype(object).where(frame.index != row, value)})


def _bad_inputs():
    """(name, change(frame), expected message) for a frame of 5 rows, from the active adapter's features."""
    categorical, numeric = ADAPTER.categorical, ADAPTER.numeric
    cases = [
        ("no rows", lambda f: f.head(0), "no rows"),
        ("float ids", lambda f: f.assign(**{ADAPTER.id: f[ADAPTER.id].astype("float64")}), "ids must be integers"),
    ]
    if categorical and numeric:
        cases.append(
            (
                "two missing columns",
                lambda f: f.drop(columns=[numeric[-1], categorical[0]]),
                f"lacks required columns {[categorical[0], numeric[-1]]}",
            )
        )
    if categorical:
        cases.append(
            (
                "number as category",
                lambda f: f.assign(**{categorical[0]: 7.0}),
                f"{categorical[0]}: expected text or missing, got float 7.0",
            )
        )
    if numeric:
        cases += [
            (
                "text as number",
                lambda f: _at_row(f, numeric[0], "June", 1),
                f"{numeric[0]}: expected a number or missing, got str 'June' at row 1",
            ),
            ("booleans", lambda f: f.assign(**{numeric[-1]: True}), f"{numeric[-1]}: expected numbers, got booleans"),
            ("infinity", lambda f: f.assign(**{numeric[0]: np.inf}), f"{numeric[0]}: infinite values"),
        ]
    # the first declared range: a value just beyond it
    for name, (low, high) in ADAPTER.feature_ranges.items():
        if high is not None or low is not None:
            beyond = float(high) + 1.0 if high is not None else float(low) - 1.0
            cases.append(
                (
                    f"{name} out of range",
                    lambda f, n=name, v=beyond: _at_row(f, n, v, 2),
                    f"{name}: {beyond!r} outside the allowed range",
                )
            )
            break
    return cases


@pytest.mark.long
@pytest.mark.parametrize(
    "change, expected", [case[1:] for case in _bad_inputs()], ids=[case[0] for case in _bad_inputs()]
)
def test_bad_input_is_refused_with_the_problem_named(deployed, test_rows, change, expected):
    with pytest.raises(ContractError) as error:
        deployed.predict(change(test_rows.head(5).copy()))
    assert expected in str(error.value)


@pytest.mark.long
def test_manifest_ranges_are_the_adapters_and_name_only_numeric_features(deployed):
    ranges = deployed.manifest["ranges"]
    assert set(ranges) <= set(deployed.manifest["numeric"])
    assert ranges == {name: list(bounds) for name, bounds in ADAPTER.feature_ranges.items()}


@pytest.mark.long
@pytest.mark.skipif(not ADAPTER.numeric, reason="the adapter has no numeric features")
def test_missing_numbers_are_imputed_like_training(deployed, test_rows):
    # The pipeline imputes inside the model: an explicit NaN and the learned
    # median give the same prediction.
    column = ADAPTER.numeric[0]
    row = test_rows.head(1).drop(columns=[ADAPTER.target])
    learned = [values[column] for key, values in deployed.manifest["learned"].items() if key.endswith("impute_values")]
    assert learned and len(set(learned)) == 1  # every base estimator learned the same value
    both = pd.concat([row.assign(**{column: np.nan}), row.assign(**{column: learned[0]})], ignore_index=True)
    probabilities = deployed.predict(both).probabilities
    assert (probabilities[0] == probabilities[1]).all()


class Exploit:
    """Unpickling this creates the marker file: proof that a file was loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.long
@pytest.mark.parametrize("also_forged", ["nothing", "manifest", "manifest_and_lock_entry"])
def test_a_swapped_model_is_never_unpickled(reproduced, tmp_path, also_forged):
    paths = deploy_copy(reproduced, tmp_path / "deploy")
    marker = tmp_path / "unpickled"
    paths["model_path"].write_bytes(pickle.dumps(Exploit(marker)))
    if also_forged != "nothing":  # an attacker who also edits the manifest to match
        manifest = json.loads(paths["manifest_path"].read_text())
        manifest["model_sha256"] = hashlib.sha256(paths["model_path"].read_bytes()).hexdigest()
        paths["manifest_path"].write_text(json.dumps(manifest))
    if also_forged == "manifest_and_lock_entry":
        relock(paths, "manifest.json")
    with pytest.raises(artifact.ArtifactError, match="refusing to load") as error:
        predict.load_model(**paths)
    assert "dvc.lock" in str(error.value)
    assert not marker.exists()


@pytest.mark.long
def test_version_mismatch_lists_each_package_and_the_override_is_loud(reproduced, tmp_path, caplog):
    paths = deploy_copy(reproduced, tmp_path / "deploy")
    manifest = json.loads(paths["manifest_path"].read_text())
    manifest["versions"].update({"numpy": "1.26.4", "scikit-learn": "1.3.2"})
    paths["manifest_path"].write_text(json.dumps(manifest))
    relock(paths, "manifest.json")  # a consistent run, trained elsewhere
    with pytest.raises(artifact.ArtifactError) as error:
        predict.load_model(**paths)
    message = str(error.value)
    assert "numpy: trained with 1.26.4" in message and "scikit-learn: trained with 1.3.2" in message
    assert "pandas" not in message
    with caplog.at_level(logging.WARNING):
        deployed = predict.load_model(**paths, allow_version_mismatch=True)
    assert "DESPITE VERSION MISMATCH" in caplog.text and "numpy" in caplog.text
    assert deployed.identity()["versions"]["numpy"] == "1.26.4"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["hist_gradient_boosting", "random_forest"])
def test_the_thread_count_changes_no_prediction(tmp_path, model):
    one, rows = tiny_deployed(tmp_path / "one", 3, model, threads=1)
    two, _ = tiny_deployed(tmp_path / "two", 3, model, threads=2)
    assert one.identity()["threads"] == 1 and two.identity()["threads"] == 2
    assert one.predict(rows).probabilities.tobytes() == two.predict(rows).probabilities.tobytes()


def test_a_bad_thread_setting_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.setenv(config.THREADS_ENV, "many")
    absent = {name: tmp_path / "absent" for name in ("model_path", "manifest_path", "lock_path")}
    with pytest.raises(ValueError, match=rf"{config.THREADS_ENV}='many': give a whole number"):
        predict.load_model(**absent)


@pytest.mark.long
@pytest.mark.parametrize("key", ["evaluate.threshold"])
def test_params_that_differ_from_the_locked_run_are_refused(reproduced, tmp_path, key):
    paths = deploy_copy(reproduced, tmp_path / "deploy")
    raw = yaml.safe_load(paths["params_path"].read_text())
    section, name = key.split(".")
    old = raw[section][name]
    new = (round(old + 0.1, 6) if old + 0.1 < 1 else round(old / 2, 6)) if isinstance(old, float) else old + 1
    raw[section][name] = new
    paths["params_path"].write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(artifact.ArtifactError, match=rf"{key} = {new!r}.*'(train|evaluate)'.*{old!r}"):
        predict.load_model(**paths)


@pytest.mark.long
def test_batch_command_refuses_bad_input_without_writing(reproduced, test_rows, tmp_path):
    last = ADAPTER.features[-1]
    test_rows.head(10).drop(columns=[ADAPTER.id]).to_csv(tmp_path / "no_ids.csv", index=False)
    test_rows.head(10).drop(columns=[last]).to_csv(tmp_path / "no_feature.csv", index=False)
    output = tmp_path / "out.parquet"
    for name, expected in [
        ("no_ids.csv", f"lacks the id column {ADAPTER.id!r}"),
        ("no_feature.csv", f"lacks required columns [{last!r}]"),
        ("rows.json", "unknown input format '.json'"),
        ("absent.csv", "not found"),
    ]:
        result = run(
            ["python", "-m", "src.serving.predict", "--input", str(tmp_path / name), "--output", str(output)],
            cwd=reproduced,
            check=False,
        )
        assert result.returncode != 0 and expected in result.stderr and "Traceback" not in result.stderr
        assert not output.exists()


# --- output formats -----------------------------------------------------------


def _not_loaded(**_):
    raise AssertionError("the model was loaded before --output was checked")


@pytest.mark.parametrize("name", ["out.json", "out", "out.csv.gz", "out.parquet.tmp"])
def test_an_output_of_unknown_format_is_refused_before_the_model_loads(tmp_path, monkeypatch, name):
    monkeypatch.setattr(predict, "load_model", _not_loaded)
    with pytest.raises(ValueError) as error:
        predict.main(["--input", str(tmp_path / "rows.csv"), "--output", str(tmp_path / name)])
    message = str(error.value)
    assert str(tmp_path / name) in message and all(ext in message for ext in (".csv", ".parquet", ".pq"))
    assert not list(tmp_path.iterdir())


def test_an_output_that_is_a_directory_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(predict, "load_model", _not_loaded)
    folder = tmp_path / "predictions.csv"  # a folder, whatever its name says
    folder.mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        predict.main(["--input", str(tmp_path / "rows.csv"), "--output", str(folder)])
    assert not list(folder.iterdir())


@pytest.mark.slow
def test_the_command_names_the_accepted_extensions_without_a_traceback(tmp_path):
    result = run(
        [
            "python",
            "-m",
            "src.serving.predict",
            "--input",
            str(tmp_path / "rows.csv"),
            "--output",
            str(tmp_path / "out.xlsx"),
        ],
        cwd=config.ROOT,
        check=False,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "predict: error:" in result.stderr and "extension '.xlsx'" in result.stderr
    assert ".csv" in result.stderr and ".parquet" in result.stderr
    assert not (tmp_path / "out.xlsx").exists()


def _csv_text(value) -> str:
    """A cell as the CSV must hold it: floats in their shortest repr."""
    return repr(float(value)) if isinstance(value, float) else str(value)


@pytest.mark.slow
@pytest.mark.parametrize("n_classes", [2, 3])
def test_csv_output_holds_the_parquet_outputs_values_in_shortest_repr(tmp_path, monkeypatch, n_classes):
    deployed, rows = tiny_deployed(tmp_path / "model", n_classes)
    monkeypatch.setattr(predict, "load_model", lambda **_: deployed)
    files.write_frame(tmp_path / "rows.parquet", rows)
    outputs = {name: tmp_path / name for name in ("out.parquet", "out.PQ", "out.csv", "again.csv")}
    for path in outputs.values():
        predict.main(["--input", str(tmp_path / "rows.parquet"), "--output", str(path)])

    parquet = outputs["out.parquet"].read_bytes()
    assert parquet[:4] == b"PAR1" and outputs["out.PQ"].read_bytes() == parquet
    expected = files.read_frame(outputs["out.parquet"])
    assert list(expected.columns) == deployed.schema.names and len(expected) == len(rows)

    text = outputs["out.csv"].read_bytes()
    assert text == outputs["again.csv"].read_bytes()  # deterministic
    assert b"\r" not in text and text.endswith(b"\n")
    lines = text.decode().splitlines()
    assert lines[0] == ",".join(deployed.schema.names)
    cells = [line.split(",") for line in lines[1:]]
    assert cells == [[_csv_text(value) for value in row] for row in expected.itertuples(index=False)]
    # and it reads back to the same float64 bits
    back = pd.read_csv(outputs["out.csv"], dtype={"label": expected["label"].dtype})
    for column in _probability_columns(expected):
        assert np.array_equal(back[column].to_numpy().view(np.int64), expected[column].to_numpy().view(np.int64))


@pytest.mark.long
def test_batch_command_writes_csv_with_the_evaluate_stages_values(reproduced, tmp_path):
    output = tmp_path / "predictions.csv"
    run(["python", "-m", "src.serving.predict", "--input", TEST_FEATURES, "--output", str(output)], cwd=reproduced)
    saved = pd.read_parquet(reproduced / SAVED_PREDICTIONS)
    assert output.read_text().splitlines()[0] == ",".join(saved.columns)
    written = pd.read_csv(output, dtype={"label": saved["label"].dtype})
    pd.testing.assert_frame_equal(written, saved, check_exact=True, check_dtype=False)
    for column in _probability_columns(saved):  # exact bits, not approximately equal
        assert np.array_equal(written[column].to_numpy().view(np.int64), saved[column].to_numpy().view(np.int64))


# --- input and output paths -------------------------------------------------------


def _rows_csv(tmp_path: Path) -> Path:
    path = tmp_path / "rows.csv"
    frames.features(5).drop(columns=[ADAPTER.target]).to_csv(path, index=False)
    return path


def _same_path(rows: Path) -> Path:
    return rows


def _other_spelling(rows: Path) -> Path:
    return rows.parent / "." / ".." / rows.parent.name / rows.name


def _symlink(rows: Path) -> Path:
    (rows.parent / "link.csv").symlink_to(rows)
    return rows.parent / "link.csv"


def _hard_link(rows: Path) -> Path:
    (rows.parent / "hard.csv").hardlink_to(rows)
    return rows.parent / "hard.csv"


@pytest.mark.parametrize(
    "output_of",
    [_same_path, _other_spelling, _symlink, _hard_link],
    ids=["same path", "other spelling", "symlink", "hard link"],
)
def test_an_output_that_is_the_input_is_refused_before_anything_is_read(tmp_path, monkeypatch, output_of):
    monkeypatch.setattr(predict, "load_model", _not_loaded)
    rows = _rows_csv(tmp_path)
    before = rows.read_bytes()
    output = output_of(rows)
    with pytest.raises(ValueError, match="is the input file") as error:
        predict.main(["--input", str(rows), "--output", str(output)])
    assert str(output) in str(error.value)
    assert rows.read_bytes() == before


def test_an_input_that_is_a_directory_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(predict, "load_model", _not_loaded)
    folder = tmp_path / "rows.csv"  # a folder, whatever its name says
    folder.mkdir()
    with pytest.raises(ValueError, match=r"--input .*rows\.csv is a directory"):
        predict.main(["--input", str(folder), "--output", str(tmp_path / "out.csv")])
    assert not (tmp_path / "out.csv").exists()


@pytest.fixture
def read_only(tmp_path):
    """Mark paths read-only (no write bit, which counts even for root); restore them afterwards."""
    marked = []

    def mark(path: Path) -> Path:
        marked.append((path, path.stat().st_mode))
        path.chmod(path.stat().st_mode & ~0o222)
        return path

    yield mark
    for path, mode in reversed(marked):
        path.chmod(mode)


def test_a_read_only_output_file_is_refused_and_kept(tmp_path, monkeypatch, read_only):
    monkeypatch.setattr(predict, "load_model", _not_loaded)
    output = tmp_path / "out.csv"
    output.write_text("earlier predictions\n")
    read_only(output)
    with pytest.raises(ValueError, match=r"--output .*out\.csv is read-only"):
        predict.main(["--input", str(_rows_csv(tmp_path)), "--output", str(output)])
    assert output.read_text() == "earlier predictions\n"


@pytest.mark.parametrize("below", ["", "new/sub"])
def test_an_output_in_a_read_only_folder_is_refused_and_nothing_is_written(tmp_path, monkeypatch, read_only, below):
    monkeypatch.setattr(predict, "load_model", _not_loaded)
    rows = _rows_csv(tmp_path)
    folder = tmp_path / "locked"
    folder.mkdir()
    read_only(folder)
    output = folder / below / "out.csv"
    with pytest.raises(ValueError, match=rf"the folder {folder} is read-only") as error:
        predict.main(["--input", str(rows), "--output", str(output)])
    assert str(output) in str(error.value)
    assert not list(folder.iterdir())


def test_an_output_below_a_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(predict, "load_model", _not_loaded)
    rows = _rows_csv(tmp_path)
    with pytest.raises(ValueError, match=r"rows\.csv is not a directory"):
        predict.main(["--input", str(rows), "--output", str(rows / "out.csv")])


@pytest.mark.slow
@pytest.mark.parametrize("existing", [False, True], ids=["new output", "existing output"])
def test_a_write_that_fails_midway_leaves_nothing_half_written(tmp_path, monkeypatch, existing):
    deployed, rows = tiny_deployed(tmp_path / "model", 2)
    monkeypatch.setattr(predict, "load_model", lambda **_: deployed)
    files.write_frame(tmp_path / "rows.parquet", rows)
    output = tmp_path / "out" / "predictions.csv"
    if existing:
        output.parent.mkdir()
        output.write_text("earlier predictions\n")

    def fail_midway(self, handle, **_):
        handle.write("id,label\n1,")
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_midway)
    with pytest.raises(ValueError, match=r"cannot write --output .*predictions\.csv: Input/output error"):
        predict.main(["--input", str(tmp_path / "rows.parquet"), "--output", str(output)])
    if existing:
        assert output.read_text() == "earlier predictions\n"
    else:
        assert not output.exists()
    assert [path.name for path in output.parent.iterdir()] == (["predictions.csv"] if existing else [])


def test_path_refusals_are_one_line_without_a_traceback(tmp_path, read_only):
    rows = _rows_csv(tmp_path)
    (tmp_path / "folder.csv").mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    cases = [
        (rows, rows, "is the input file", rows),
        (tmp_path / "folder.csv", tmp_path / "out.csv", "is a directory", tmp_path / "folder.csv"),
        (rows, locked / "out.csv", "is read-only", locked / "out.csv"),
    ]
    # In process, through what `python -m src.serving.predict` runs (predict.cli): any exception
    # but its one-line exit would fail here (test_the_command_names_... runs the real process).
    for input_path, output, expected, named in cases:
        with pytest.raises(SystemExit) as exited:
            predict.cli(["--input", str(input_path), "--output", str(output)])
        message = exited.value.code
        assert isinstance(message, str), message  # a string exits with status 1, printed to stderr
        lines = message.splitlines()
        assert len(lines) == 1 and lines[0].startswith("predict: error: "), message
        assert expected in lines[0] and str(named) in lines[0], lines[0]


# --- the raw contract: entities as gathered, derived by the adapter's INPUTS ---


def _stub_raw() -> RawContract:
    """A RawContract over a stub derivation: one integer, one float and one text snapshot column."""

    def derive(rows: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {ADAPTER.id: rows[ADAPTER.id], "f": rows["n"].astype("float64") * rows["x"], "c": rows["c"]}
        )

    inputs = Inputs(
        schema=pa.schema([("n", pa.int16()), ("x", pa.float64()), ("c", pa.string())]),
        derive=derive,
        domains={"n": Domain(0, 10, required=True), "c": Domain(values=("a", "b"))},
    )
    return RawContract(id=ADAPTER.id, inputs=inputs)


def test_raw_rows_are_typed_as_the_snapshot_and_derived():
    rows = pd.DataFrame(
        {ADAPTER.id: [7, 3], "n": [2.0, 10.0], "x": [1.5, None], "c": ["a", None], "other": ["kept out", "of it"]}
    )
    derived, ignored = _stub_raw().check(rows)
    assert derived[ADAPTER.id].tolist() == [7, 3] and ignored == ["other"]
    assert derived["f"].tolist()[0] == 3.0 and np.isnan(derived["f"].tolist()[1])
    assert derived["c"].iloc[0] == "a" and pd.isna(derived["c"].iloc[1])  # as featurize reads the snapshot
    without_ids, _ = _stub_raw().check(rows.drop(columns=ADAPTER.id))
    assert ADAPTER.id not in without_ids.columns and without_ids["f"].tolist()[0] == 3.0


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda rows: rows.drop(columns="x"), r"raw input lacks required columns \['x'\]"),
        (lambda rows: rows.assign(x=["1.5", "oops"]), r"x: expected double or missing, got str '1.5' at rows 0, 1"),
        (lambda rows: rows.assign(n=[1.5, 2.0]), r"n: not int16: Float value 1.5"),
        (lambda rows: rows.assign(n=[40000, 2]), r"n: not int16: Integer value 40000 not in range"),
        (lambda rows: rows.assign(n=[11, 2]), r"n: 11 outside the allowed range from 0 to 10 at row 0"),
        (lambda rows: rows.assign(n=[None, 2]), r"n: missing values at row 0; the column is required"),
        (lambda rows: rows.assign(c=["a", "z"]), r"c: 'z' is not one of \['a', 'b'\] at row 1"),
        (lambda rows: rows.assign(c=["a", 5]), r"c: expected text or missing, got int 5 at row 1"),
        (lambda rows: rows.assign(n=[True, False]), r"n: expected int16, got booleans"),
    ],
)
def test_bad_raw_rows_are_refused_naming_the_column(change, expected):
    rows = pd.DataFrame({"n": [2, 3], "x": [1.5, 2.5], "c": ["a", "b"]})
    with pytest.raises(ContractError, match=expected):
        _stub_raw().check(change(rows))


def test_adapter_inputs_must_read_the_snapshots_own_columns_and_types():
    if ADAPTER.inputs is None:
        pytest.skip("the adapter declares no INPUTS")
    field = ADAPTER.inputs.schema[0]
    other = pa.int8() if field.type != pa.int8() else pa.int16()
    bad = dataclasses.replace(ADAPTER.inputs, schema=pa.schema([pa.field(field.name, other)]))
    with pytest.raises(ValueError, match=f"inputs column '{field.name}' is {other}"):
        dataclasses.replace(ADAPTER, inputs=bad).check()


def test_without_the_adapter_package_only_engineered_rows_are_served(caplog):
    # A deployment without the adapter's package: the raw contract is then absent, and says so.
    manifest = {"id": ADAPTER.id, "dataset": "no_such_adapter_package"}
    with caplog.at_level(logging.WARNING):
        assert RawContract.from_manifest(manifest) is None
    assert "src/datasets/no_such_adapter_package/ is not here" in caplog.text
