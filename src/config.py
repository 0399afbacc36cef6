"""Every path and environment-variable name the project uses, in one place.

Stage scripts, tests, the Makefile helpers and dvc.yaml all refer to these
names; dvc.yaml repeats the paths as literals only because DVC needs them
there (tests/test_config.py checks that the two agree).
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = ROOT / "params.yaml"

DATA_DIR = ROOT / "data"
# The demo operational database (git-ignored, rebuilt by `make source`).
SOURCE_DIR = DATA_DIR / "source"
SOURCE_DB = SOURCE_DIR / "flights.sqlite"
# Credentials belong in the environment, never in params.yaml or dvc.lock.
SOURCE_URL_ENV = "FLIGHTS_SOURCE_URL"
# Set to 1 to make SQLite return unordered rows in reverse (`make verify VARY=1`).
SCRAMBLE_ENV = "SNAPSHOT_SCRAMBLE_ORDER"

SNAPSHOT = DATA_DIR / "snapshot" / "flights.parquet"
FEATURES_DIR = DATA_DIR / "features"
TRAIN_FEATURES = FEATURES_DIR / "train.parquet"
TEST_FEATURES = FEATURES_DIR / "test.parquet"
FEATURIZE_SUMMARY = ROOT / "metrics" / "featurize.json"

MODEL_DIR = ROOT / "models"
MODEL = MODEL_DIR / "model.pkl"
MANIFEST = MODEL_DIR / "manifest.json"

EVAL_DIR = ROOT / "eval"  # dvclive's directory: metrics.json and plots/
METRICS = EVAL_DIR / "metrics.json"
PREDICTIONS = DATA_DIR / "predictions" / "test.parquet"


def source_url() -> str:
    """SQLAlchemy URL of the source database: the environment wins."""
    import os

    return os.environ.get(SOURCE_URL_ENV) or f"sqlite:///{SOURCE_DB}"

# Deployment (src/predict.py, src/serve.py): the model is loaded only when it
# matches the outputs that this lock file records for the pipeline run.
DVC_LOCK = ROOT / "dvc.lock"
