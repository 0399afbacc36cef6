"""Every path and environment-variable name the project uses, in one place.

Stage scripts, tests, the Makefile helpers and dvc.yaml all refer to these
names; dvc.yaml repeats the paths as literals only because DVC needs them
there (tests/template/test_config.py checks that the two agree). The names are
neutral: what the data is about lives in the dataset adapter (src/datasets/).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PARAMS_FILE = ROOT / "params.yaml"

DATA_DIR = ROOT / "data"
# The embedded demo source (git-ignored, rebuilt by `make source`), used when
# SOURCE_URL is unset.
SOURCE_DIR = DATA_DIR / "source"
SOURCE_DB = SOURCE_DIR / "source.sqlite"
# Credentials belong in the environment, never in params.yaml or dvc.lock.
SOURCE_URL_ENV = "SOURCE_URL"
# Set to 1 to make SQLite return unordered rows in reverse (`make verify VARY=1`).
SCRAMBLE_ENV = "SNAPSHOT_SCRAMBLE_ORDER"
# How many threads train, evaluate and serving may use: a machine setting, not a
# param, because no output byte depends on it (src/pipeline/model.py, thread_limits).
THREADS_ENV = "PIPELINE_THREADS"

# The params check's marker (src/pipeline/check_params.py): gather depends on it.
PARAMS_CHECKED_MARKER = DATA_DIR / "params_checked.txt"
# The recorded lists' check against the training features (src/pipeline/check_recorded.py): train depends on it.
RECORDED_CHECKED_MARKER = DATA_DIR / "recorded_checked.txt"
SNAPSHOT = DATA_DIR / "snapshot" / "snapshot.parquet"
FEATURES_DIR = DATA_DIR / "features"
TRAIN_FEATURES = FEATURES_DIR / "train.parquet"
TEST_FEATURES = FEATURES_DIR / "test.parquet"
FEATURIZE_SUMMARY = ROOT / "metrics" / "featurize.json"
# train's validation estimate (cross-validation on the training features only).
VALIDATION_METRICS = ROOT / "metrics" / "validation.json"

MODEL_DIR = ROOT / "models"
MODEL = MODEL_DIR / "model.pkl"
MANIFEST = MODEL_DIR / "manifest.json"

EVAL_DIR = ROOT / "eval"  # dvclive's directory: metrics.json and plots/
METRICS = EVAL_DIR / "metrics.json"
PREDICTIONS = DATA_DIR / "predictions" / "test.parquet"

# Deployment (src/serving/): the model is loaded only when it matches the
# outputs that this lock file records for the pipeline run.
DVC_LOCK = ROOT / "dvc.lock"

# The project's virtual environment (make setup); tools put its bin/ first on PATH.
VENV = ROOT / ".venv"


# `dvc exp run --queue` (and `--temp`) runs each experiment in a temporary copy
# of the project that holds only what git tracks, so the git-ignored demo source
# is not in it. DVC 3 makes every such copy inside the project it came from:
# <project>/.dvc/tmp/exps/<tmpdir>/ (a `--temp` run: .../exps/standalone/<tmpdir>/).
EXPERIMENT_COPIES = (".dvc", "tmp", "exps")


def experiment_origin(root: Path = ROOT) -> Path | None:
    """The project that `root` is a DVC experiment copy of, or None if it is no such copy."""
    for parent in root.parents:
        if parent.parts[-len(EXPERIMENT_COPIES) :] == EXPERIMENT_COPIES:
            return parent.parents[len(EXPERIMENT_COPIES) - 1]
    return None


def default_source_db(root: Path = ROOT) -> Path:
    """The demo source of the project at `root`; in an experiment copy, its origin's.

    So a queued sweep over an upstream param (`gather.as_of`) needs no SOURCE_URL.
    gather opens SQLite read-only: copies running at once can share the file.
    A copy anywhere else (another runner, another machine) finds nothing here
    and needs SOURCE_URL.
    """
    relative = SOURCE_DB.relative_to(ROOT)
    origin = experiment_origin(root)
    if origin is not None and not (root / relative).exists():
        return origin / relative
    return root / relative


def source_url() -> str:
    """SQLAlchemy URL of the source database: SOURCE_URL wins, else the demo source."""
    return os.environ.get(SOURCE_URL_ENV) or f"sqlite:///{default_source_db()}"


def threads() -> int:
    """The thread budget: PIPELINE_THREADS, else every core this process may run on.

    Queue workers running at once share the cores: give each its share
    (`PIPELINE_THREADS=1 dvc queue start -j 2` on two cores). The affinity mask
    does not see a container's CPU quota: set the variable there too.
    """
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
        return max(1, len(usable))
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(
            f"{THREADS_ENV}={value!r}: give a whole number of threads, 1 or more (unset, every usable core)"
        )
    return count
