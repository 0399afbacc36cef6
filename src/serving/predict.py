"""Predictions from the deployed model: a Python API and a batch command.

    from src.serving import predict
    deployed = predict.load_model()        # verify, then unpickle
    result = deployed.predict(frame)       # or predict.predict(frame)
    result.predictions                     # [id], label and class probabilities

    python -m src.serving.predict --input rows.csv|rows.parquet --output predictions.parquet|predictions.csv
    python -m src.serving.predict --raw --input snapshot.parquet --output ...   # entities as gathered

Two input contracts: engineered rows (the model's features, src/contract.py's
Contract), and with --raw (deployed.predict_raw) snapshot rows, which the
adapter's own row-local derivation (its INPUTS, the code featurize runs) turns
into engineered rows first (RawContract).

The promise: the same rows give the same bytes as the evaluate stage, or a
clear refusal. So loading checks the model and manifest against `dvc.lock` and
the model against the manifest before unpickling, and the running versions
against the manifest (src/artifact.py); the threshold is params.yaml's,
refused if it differs from what dvc.lock recorded for the run; threads are the
machine's (PIPELINE_THREADS), limited as in the evaluate stage, so they change
no prediction; rows are checked against the manifest's contract (src/contract.py)
and put in the recorded feature order; predictions are framed by the evaluate
stage's own `predictions_frame` and written with its schema, as Parquet or
CSV as the output's extension says. Batches of up to SMALL_BATCH rows go
through the compiled pipeline when it was verified to give scikit-learn's
bytes (src/serving/compiled.py); that is what makes a single row fast.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from threadpoolctl import ThreadpoolController

from src.pipeline import artifact, config, files, lockfile
from src.pipeline.adapter import task_of
from src.pipeline.artifact import VersionMismatchError
from src.pipeline.model import thread_limits
from src.pipeline.params import ParamsError, load_params
from src.pipeline.predictions import model_outputs, predictions_frame, predictions_schema
from src.serving.compiled import SMALL_BATCH, Compiled, compile_pipeline, probe_rows
from src.serving.contract import CSV_LINES, ROWS, Checked, Contract, ContractError, Numbering, RawContract

log = logging.getLogger(__name__)

# The params that change prediction bytes, as dvc.lock records them.
LOCKED_PARAMS = ("evaluate.threshold",)
# The batch command's output format, by the output's extension. Anything else
# is refused rather than guessed: a file named .csv must hold CSV.
OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class Prediction:
    predictions: pd.DataFrame  # [id (when the input had it)], label and probabilities (src/pipeline/predictions.py)
    unknown_categories: dict[str, dict[str, int]]  # per column: {"unknown": n, "missing": n}
    ignored_columns: list[str]
    probabilities: np.ndarray  # rows x classes, in the manifest's class order; a regression's values (rows)


class Deployed:
    """A verified model with its manifest, contract, threshold and thread count."""

    def __init__(self, model: Any, manifest: dict[str, Any], threshold: float, threads: int):
        self.model = model
        self.manifest = manifest
        self.contract = Contract.from_manifest(manifest)
        self.raw = RawContract.from_manifest(manifest)  # None: the adapter serves engineered rows only
        self.threshold = threshold
        self.threads = threads
        self.classes = list(manifest["classes"])
        # The task of the target the model was trained on: the pipeline's one rule (adapter.task_of).
        self.task = task_of(pa.type_for_alias(manifest["target_type"]))
        self.schema = predictions_schema(self.contract.id, self.classes, pa.type_for_alias(manifest["target_type"]))
        # Created after unpickling, so it sees the BLAS/OpenMP libraries the
        # model loaded; limits them per call as the evaluate stage does
        # (thread_limits: the count changes speed, not predictions).
        self._threadpools = ThreadpoolController()
        # Thread limits are process-wide: one prediction at a time keeps a
        # concurrent call from restoring them mid-prediction.
        self._lock = threading.Lock()
        # Small batches skip scikit-learn's per-call overhead, once checked to give its bytes (compiled.py).
        contract = self.contract
        probes = contract.check(probe_rows(contract.categories, contract.numeric, contract.ranges, contract.example()))
        self.compiled = compile_pipeline(
            model, contract.features, contract.categorical, contract.numeric, probes, self.task
        )

    def identity(self) -> dict[str, Any]:
        """What a caller needs to tell which model answered."""
        m = self.manifest
        return {
            "model_sha256": m["model_sha256"],
            "params_sha256": m.get("params_sha256"),
            "training_data_sha256": m.get("training_data", {}).get("sha256"),
            "training_rows": m.get("training_data", {}).get("rows"),
            "model": m.get("model"),
            "dataset": m.get("dataset"),
            "classes": self.classes,
            "versions": m["versions"],
            "threshold": self.threshold,
            "threads": self.threads,
        }

    def predict(self, frame: pd.DataFrame, numbering: Numbering = ROWS) -> Prediction:
        return self.predict_checked(self.contract.check(frame, numbering))

    def compiled_for(self, rows: int) -> Compiled | None:
        """The compiled pipeline, if it answers a batch of `rows`: the one rule, read by
        predict_checked and the service alike (verified at load, and at most SMALL_BATCH rows)."""
        return self.compiled if rows <= SMALL_BATCH else None

    def predict_checked(self, checked: Checked) -> Prediction:
        """Predictions for rows the contract passed (Contract.check, or Contract.validated for the service's rows)."""
        compiled = self.compiled_for(checked.rows)
        if compiled is not None:
            probabilities = compiled.outputs(checked.columns)  # one thread, no BLAS: no limits to set
        else:
            with self._lock, self._threadpools.limit(limits=thread_limits(self.threads)):
                probabilities = model_outputs(self.model, checked.features, self.task)
        ids = checked.ids if checked.ids is not None else np.zeros(len(probabilities), dtype=np.int64)
        predictions = predictions_frame(self.contract.id, ids, probabilities, self.classes, self.threshold, self.task)
        if checked.ids is None:
            del predictions[self.contract.id]  # in place: drop() copies the frame
        return Prediction(predictions, checked.unknown_categories, checked.ignored_columns, probabilities)

    def predict_raw(self, frame: pd.DataFrame, numbering: Numbering = ROWS) -> Prediction:
        """Predictions for snapshot rows: derived by the adapter's INPUTS, then as predict()."""
        if self.raw is None:
            raise ContractError(
                f"the {self.manifest.get('dataset')!r} adapter declares no INPUTS: send engineered rows"
            )
        derived, ignored = self.raw.check(frame, numbering)
        result = self.predict(derived, numbering)
        return Prediction(result.predictions, result.unknown_categories, ignored, result.probabilities)


def load_model(
    model_path: Path = config.MODEL,
    manifest_path: Path = config.MANIFEST,
    lock_path: Path = config.DVC_LOCK,
    params_path: Path = config.PARAMS_FILE,
    allow_version_mismatch: bool = False,
) -> Deployed:
    """Verify the artifacts against dvc.lock and the manifest, then unpickle.

    Raises artifact.ArtifactError (or ParamsError) naming what does not match.
    `allow_version_mismatch` is the expert override for other library
    versions: logged as a warning, and predictions may then differ.
    """
    params = load_params(params_path)
    threads = config.threads()  # a bad PIPELINE_THREADS is refused before anything loads
    lock = artifact.dvc_lock(lock_path)
    current = {"evaluate.threshold": params.evaluate.threshold}
    for key in LOCKED_PARAMS:
        for stage, value in lockfile.recorded_params(lock, key, config.PARAMS_FILE.name):
            if value != current[key]:
                raise artifact.ArtifactError(
                    f"{params_path} has {key} = {current[key]!r}, but stage {stage!r} in {lock_path} ran with "
                    f"{value!r}: run `dvc repro` so the model and its evaluation match the params"
                )
    model, manifest = artifact.load_model(model_path, manifest_path, allow_version_mismatch, lock_path=lock_path)
    return Deployed(model, manifest, params.evaluate.threshold, threads)


def override_hint(command: str) -> str:
    """How to load despite a version mismatch, for `command` (serve or predict)."""
    make = "make serve" if command == "serve" else "make predict INPUT=.. OUTPUT=.."
    return (
        f"To {command} anyway (predictions may differ): --allow-version-mismatch, or `{make} ALLOW_VERSION_MISMATCH=1`"
    )


@functools.cache
def default_model() -> Deployed:
    """The repository's model, loaded once per process."""
    return load_model()


def predict(frame: pd.DataFrame, deployed: Deployed | None = None) -> Prediction:
    return (deployed or default_model()).predict(frame)


def read_rows(path: Path, contract: Contract, raw: RawContract | None = None) -> pd.DataFrame:
    """Rows from CSV or Parquet. CSV categories are read as text (a code like
    "123" stays a category). pandas (>= 3.1, locked) parses CSV floats exactly,
    so a CSV written from a frame reads back the same float64 values; a test
    checks it, since older parsers could be off in the last bit."""
    path = check_input(path)
    if path.suffix.lower() == ".csv":
        try:
            text = (
                [*contract.categorical]
                if raw is None
                else [column.name for column in raw.inputs.schema if pa.types.is_string(column.type)]
            )
            return pd.read_csv(path, dtype={name: "str" for name in text})
        except pd.errors.EmptyDataError:  # whitespace only: pandas' "No columns to parse from file"
            raise ValueError(f"input file {path} is empty: no header, no rows") from None
    return files.read_frame(path)


def check_input(path: Path) -> Path:
    """Refuse an input of unknown format, absent, or empty, before the model loads."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ValueError(f"{path}: unknown input format {suffix!r}; use .csv or .parquet")
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    if path.is_dir():
        raise ValueError(f"--input {path} is a directory; name a .csv or .parquet file")
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"input file {path} is empty: no header, no rows")
    return path


def _read_only(path: Path) -> bool:
    # No write bit at all counts as read-only even for root, whom os.access
    # lets write anywhere: a file or folder marked read-only is not overwritten.
    return not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222


def check_output(path: Path, input_path: Path) -> Path:
    """Refuse an output that is the input, or that cannot be written, before anything is read.

    The predictions are written to a temporary file next to `path` and renamed
    over it (files.atomic_open), so the folder must be writable; an existing
    read-only output is refused too, rather than silently replaced.
    """
    path, input_path = Path(path), Path(input_path)
    same = (
        os.path.samefile(path, input_path)
        if path.exists() and input_path.exists()
        else path.resolve() == input_path.resolve()
    )
    if same:
        raise ValueError(
            f"--output {path} is the input file {input_path}: writing the predictions would "
            "replace the rows they come from; name another output"
        )
    if path.exists() and _read_only(path):
        raise ValueError(f"--output {path} is read-only; make it writable or name another output")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # atomic_path creates missing folders
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"--output {path}: {folder} is not a directory")
    if _read_only(folder):
        raise ValueError(f"--output {path}: the folder {folder} is read-only; name an output in a writable folder")
    return path


def output_format(path: Path) -> str:
    """The format ("parquet" or "csv") that `path`'s extension names; refuses a directory or another extension."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--output {path} is a directory; name a file in it, such as {path / 'predictions.csv'}")
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        found = f"extension {suffix!r}" if suffix else "no extension"
        raise ValueError(f"--output {path} has {found}; use .csv for CSV, or .parquet or .pq for Parquet")
    return OUTPUT_FORMATS[suffix]


def write_predictions(path: Path, predictions: pd.DataFrame, schema: pa.Schema) -> None:
    """Write atomically, with the predictions schema, in the format the extension names."""
    if output_format(path) == "parquet":
        files.write_frame(path, predictions, schema)
        return
    # Through the schema first, as for Parquet, so both formats hold the same
    # typed values. pandas writes floats in their shortest repr, which reads
    # back to the same float64 bits; "\n" line ends on every OS.
    typed = files.to_arrow(predictions, schema).to_pandas()
    with files.atomic_open(path) as handle:
        typed.to_csv(handle, index=False, lineterminator="\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.serving.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, type=Path, help="rows as .csv or .parquet")
    parser.add_argument(
        "--output", required=True, type=Path, help="predictions as .csv, or as Parquet with .parquet or .pq"
    )
    parser.add_argument(
        "--allow-version-mismatch",
        action="store_true",
        help="load on other Python/library versions than the manifest's (predictions may differ)",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="the rows are entities as gathered (snapshot rows): derive their features first",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    output_format(args.output)  # a bad --output is refused before the model is loaded
    check_input(args.input)
    check_output(args.output, args.input)
    try:
        deployed = load_model(allow_version_mismatch=args.allow_version_mismatch)
    except VersionMismatchError as error:
        raise VersionMismatchError(f"{error}\n{override_hint('predict')}") from None
    try:
        frame = read_rows(args.input, deployed.contract, deployed.raw if args.raw else None)
    except FileNotFoundError:
        raise
    except OSError as error:  # unreadable, or gone since the check: one line naming the file
        raise ValueError(f"cannot read --input {args.input}: {error.strerror or error}") from None
    if deployed.contract.id not in frame.columns:
        raise ContractError(f"{args.input} lacks the id column {deployed.contract.id!r}, which keys the predictions")
    # Errors name CSV rows by line, so an editor can jump to them; Parquet rows by position from 0.
    numbering = CSV_LINES if args.input.suffix.lower() == ".csv" else ROWS
    result = deployed.predict_raw(frame, numbering) if args.raw else deployed.predict(frame, numbering)
    try:
        write_predictions(args.output, result.predictions, deployed.schema)
    except files.DiskFullError:
        raise
    except OSError as error:  # atomic: the temporary is gone and an existing output is untouched
        raise ValueError(f"cannot write --output {args.output}: {error.strerror or error}") from None
    print(f"predict: {len(result.predictions)} rows -> {args.output}", file=sys.stderr)
    for column, counts in result.unknown_categories.items():
        if counts["unknown"] or counts["missing"]:
            print(
                f"predict: {column}: {counts['unknown']} unknown, {counts['missing']} missing (unknown bucket)",
                file=sys.stderr,
            )
    if result.ignored_columns:
        print(f"predict: ignored columns {result.ignored_columns}", file=sys.stderr)


def cli(argv: list[str] | None = None) -> None:
    """main, with every refusal one line on stderr and exit status 1 (what `python -m` runs)."""
    try:
        main(argv)
    except (artifact.ArtifactError, ContractError, ParamsError, ValueError, OSError) as error:
        # OSError: a file that cannot be read or written is named in one line, not a traceback.
        sys.exit(f"predict: error: {error}")


if __name__ == "__main__":
    cli()
