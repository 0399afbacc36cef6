# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Explore one locked run
#
# Everything here is read at one revision through `dvc.api` (the git commit's
# `params.yaml` and `dvc.lock`, and the outputs that lock names, from the DVC
# cache or the remote), and every step calls the pipeline's own functions: the
# adapter that `params.yaml` names, the params schema, the model loader that
# checks the model against `dvc.lock`, and evaluate's metrics. Nothing is
# copied, so a fork's adapter works here unchanged, and the last cell checks
# that the metrics come out byte for byte as `eval/metrics.json` at that
# revision.
#
# `notebooks/explore.py` is this notebook as a script (jupytext pairs the two;
# review and diff the script), and the committed `.ipynb` has no outputs
# (nbstripout). Open it with `make notebook`.

# %%
import io
import json
import sys
import tempfile
from pathlib import Path

# The project root: the notebook runs in notebooks/ (JupyterLab) or at the root.
ROOT = next(path for path in [Path.cwd(), *Path.cwd().parents] if (path / "dvc.yaml").is_file())
sys.path.insert(0, str(ROOT))

import dvc.api  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from dvclive import Live  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from src.pipeline import artifact, config, dataset, evaluate, featurize, model, params  # noqa: E402
from src.pipeline.adapter import REGRESSION  # noqa: E402
from src.pipeline.predictions import PREDICTION, model_outputs, predictions_frame  # noqa: E402

# %% tags=["parameters"]
# Any git revision: a commit, a branch, a data-version tag (data/YYYY-MM-DD), an experiment's name.
REV = "HEAD"


# %%
def read_bytes(path: Path) -> bytes:
    """A project file as it is at REV: from git, or (a DVC output) from the cache that REV's dvc.lock names."""
    return dvc.api.read(path.relative_to(config.ROOT).as_posix(), repo=str(ROOT), rev=REV, mode="rb")


def read_frame(path: Path) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(read_bytes(path)))


# %% [markdown]
# ## Params and the adapter

# %%
run_params = params.validate(yaml.safe_load(read_bytes(config.PARAMS_FILE)), f"params.yaml at {REV}")
adapter, adapter_params = dataset.load_adapter(run_params)
dataset.check_recorded(run_params, adapter)
classes = run_params.classes
print(f"adapter {run_params.dataset.adapter}: id {adapter.id!r}, target {adapter.target!r}, classes {classes}")
print(f"model {run_params.train.model}, seed {run_params.seed}")

# %% [markdown]
# ## The snapshot

# %%
snapshot = read_frame(config.SNAPSHOT)
print(f"{len(snapshot):,} rows x {snapshot.shape[1]} columns")
snapshot.head()

# %%
snapshot.describe(include="all").transpose()

# %% [markdown]
# ## The features and the split

# %%
train = read_frame(config.TRAIN_FEATURES)
test = read_frame(config.TEST_FEATURES)
pd.DataFrame(
    {
        "train": featurize.target_summary(train[adapter.target], adapter.task),
        "test": featurize.target_summary(test[adapter.target], adapter.task),
    }
)

# %% [markdown]
# ## The model, checked against REV's dvc.lock before it is unpickled

# %%
with tempfile.TemporaryDirectory() as scratch:
    # The three files where dvc.lock expects them, so the loader can check them against it.
    for path in (config.MODEL, config.MANIFEST, config.DVC_LOCK):
        copy = Path(scratch) / path.relative_to(config.ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(read_bytes(path))
    fitted, manifest = artifact.load_model(
        Path(scratch) / config.MODEL.relative_to(config.ROOT),
        Path(scratch) / config.MANIFEST.relative_to(config.ROOT),
        lock_path=Path(scratch) / config.DVC_LOCK.relative_to(config.ROOT),
    )
# A regression (a float target, adapter.task) has no classes.
assert adapter.task == REGRESSION or list(fitted.classes_) == classes, (list(fitted.classes_), classes)
print(manifest["title"], "| model:", json.dumps(manifest["model"]))
print("features:", ", ".join(manifest["features"]))

# %% [markdown]
# ## Predictions on the test set

# %%
X, y = test[manifest["features"]], test[adapter.target].to_numpy()
threshold = run_params.evaluate.threshold
# The thread limits train and evaluate use: the probabilities do not depend on the machine.
with threadpool_limits(limits=model.thread_limits(config.threads())):
    probabilities = model_outputs(fitted, X, adapter.task)  # a regression's: the predicted values
predictions = predictions_frame(adapter.id, test[adapter.id], probabilities, classes, threshold, adapter.task)
predictions.head()

# %%
(
    evaluate.fit_points(y, predictions[PREDICTION]).describe()
    if adapter.task == REGRESSION
    else evaluate.score_histogram(y, probabilities, classes).pivot(index="bin_start", columns="class", values="share")
)

# %% [markdown]
# ## The metrics, as the evaluate stage logs them

# %%
with tempfile.TemporaryDirectory() as scratch:
    with Live(dir=scratch, dvcyaml=False, save_dvc_exp=False, report=None) as live:
        evaluate.log_metrics(live, y, probabilities, classes, threshold, X, run_params.categories, adapter.task)
    reproduced = (Path(scratch) / "metrics.json").read_bytes()
recorded = read_bytes(config.METRICS)
print(json.dumps(json.loads(reproduced), indent=2))
assert reproduced == recorded, f"the metrics differ from eval/metrics.json at {REV}"
print(f"identical to eval/metrics.json at {REV}: {len(recorded)} bytes")
