"""Saving and loading the trained pipeline, and the manifest that describes it.

The model file is a pickle, written once from the fitted object (loading and
re-dumping a pickle changes its bytes), with a fixed protocol (the default
moves between Python versions). Loading checks the file's SHA-256 against the
manifest *before* unpickling: a pickle runs code, so a tampered or swapped
file is never deserialised. And the unpickler resolves only the globals this
pipeline's models are made of (ALLOWED_GLOBALS), so even a pickle whose hashes
were forged everywhere, dvc.lock included, cannot call anything else. Given `dvc.lock`, it also checks the model's and
the manifest's MD5 against the outputs recorded there, so the pair that loads
is the pair that the locked pipeline run produced (a manifest edited to match
a swapped model is refused too). It also compares the running Python and
library versions with those recorded at training time.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from src.pipeline import files, lockfile

PICKLE_PROTOCOL = 5
# The packages whose versions decide the pickle's bytes and the predictions.
RUNTIME_PACKAGES = ("joblib", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "threadpoolctl")

log = logging.getLogger(__name__)

# Every global (module, name) that a pickle of this pipeline's models names, and
# nothing else: unpickling calls what a pickle names, so a pickle that dvc.lock
# and the manifest vouch for would still run any code it names if this list
# were open. Exact pairs, never module prefixes (`builtins` and `functools`
# hold eval and friends). Derived with pickletools.genops (GLOBAL and
# STACK_GLOBAL) and a recording find_class from every family that
# params.ModelName offers, binary, multiclass and regression, every stacking
# combination, and each family with feature selection, fitted on tests/template/frames.py's tiny frames;
# tests/template/test_unpickle.py fails when a family names one more.
# A library upgrade can rename a module (numpy.core -> numpy._core): re-derive.
ALLOWED_GLOBALS: tuple[tuple[str, str], ...] = (
    ("builtins", "slice"),
    ("functools", "partial"),
    ("numpy", "dtype"),
    ("numpy", "float64"),
    ("numpy", "ndarray"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.random._mt19937", "MT19937"),
    ("numpy.random._pcg64", "PCG64"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random.bit_generator", "SeedSequence"),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
    ("sklearn._loss._loss", "CyHalfBinomialLoss"),
    ("sklearn._loss._loss", "CyHalfMultinomialLoss"),
    ("sklearn._loss._loss", "CyHalfSquaredError"),
    ("sklearn._loss._loss", "__pyx_unpickle_CyHalfMultinomialLoss"),
    ("sklearn._loss.link", "IdentityLink"),
    ("sklearn._loss.link", "Interval"),
    ("sklearn._loss.link", "LogitLink"),
    ("sklearn._loss.link", "MultinomialLogit"),
    ("sklearn._loss.loss", "HalfBinomialLoss"),
    ("sklearn._loss.loss", "HalfMultinomialLoss"),
    ("sklearn._loss.loss", "HalfSquaredError"),
    ("sklearn.compose._column_transformer", "ColumnTransformer"),
    ("sklearn.ensemble._forest", "RandomForestClassifier"),
    ("sklearn.ensemble._forest", "RandomForestRegressor"),
    ("sklearn.ensemble._hist_gradient_boosting.binning", "_BinMapper"),
    ("sklearn.ensemble._hist_gradient_boosting.gradient_boosting", "HistGradientBoostingClassifier"),
    ("sklearn.ensemble._hist_gradient_boosting.gradient_boosting", "HistGradientBoostingRegressor"),
    ("sklearn.ensemble._hist_gradient_boosting.predictor", "TreePredictor"),
    ("sklearn.ensemble._stacking", "StackingClassifier"),
    ("sklearn.ensemble._stacking", "StackingRegressor"),
    ("sklearn.impute._base", "SimpleImputer"),
    ("sklearn.linear_model._logistic", "LogisticRegression"),
    ("sklearn.linear_model._ridge", "Ridge"),
    ("sklearn.model_selection._split", "KFold"),
    ("sklearn.model_selection._split", "StratifiedKFold"),
    ("sklearn.neural_network._multilayer_perceptron", "MLPClassifier"),
    ("sklearn.neural_network._multilayer_perceptron", "MLPRegressor"),
    ("sklearn.neural_network._stochastic_optimizers", "AdamOptimizer"),
    ("sklearn.pipeline", "Pipeline"),
    ("sklearn.preprocessing._data", "MinMaxScaler"),
    ("sklearn.preprocessing._encoders", "OneHotEncoder"),
    ("sklearn.preprocessing._encoders", "OrdinalEncoder"),
    ("sklearn.preprocessing._function_transformer", "FunctionTransformer"),
    ("sklearn.preprocessing._label", "LabelBinarizer"),
    ("sklearn.preprocessing._label", "LabelEncoder"),
    ("sklearn.tree._classes", "DecisionTreeClassifier"),
    ("sklearn.tree._classes", "DecisionTreeRegressor"),
    ("sklearn.tree._tree", "Tree"),
    ("sklearn.utils._bunch", "Bunch"),
    ("sklearn.utils.validation", "check_array"),
    ("src.pipeline.model", "UnknownBucket"),
    ("src.pipeline.selection", "SelectFeatures"),
)


class ArtifactError(RuntimeError):
    """The model artifact cannot be trusted as it is."""


class VersionMismatchError(ArtifactError):
    """The model was trained on other Python or library versions than these (the one refusal with an override)."""


class _AllowlistUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only ALLOWED_GLOBALS: anything else is refused before it is called."""

    _allowed = frozenset(ALLOWED_GLOBALS)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._allowed:
            raise ArtifactError(
                f"refusing to unpickle {self.source}: it names the global {module}.{name}, which is not one "
                "of this pipeline's models (src/pipeline/artifact.py ALLOWED_GLOBALS)"
            )
        return super().find_class(module, name)


def loads(payload: bytes, source: object = "the model") -> Any:
    """Unpickle `payload`, resolving only the globals this pipeline's models are made of."""
    unpickler = _AllowlistUnpickler(io.BytesIO(payload))
    unpickler.source = source
    try:
        return unpickler.load()
    except ArtifactError:
        raise
    except Exception as error:  # a truncated or malformed pickle: name the file, not pickle's internals
        raise ArtifactError(f"cannot unpickle {source}: {type(error).__name__}: {error}") from None


def runtime_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    versions.update({name: metadata.version(name) for name in RUNTIME_PACKAGES})
    return versions


def save_model(model: Any, path: Path) -> str:
    """Pickle `model` atomically; return the SHA-256 of the bytes written."""
    payload = pickle.dumps(model, protocol=PICKLE_PROTOCOL)
    with files.atomic_open(path, "wb") as handle:
        handle.write(payload)
    return hashlib.sha256(payload).hexdigest()


def read_manifest(path: Path) -> dict[str, Any]:
    return _parse_manifest(_manifest_bytes(path), path)


def _manifest_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"manifest {path} not found: run `dvc repro train`") from None


def _parse_manifest(payload: bytes, path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"manifest {path} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"manifest {path} is not a JSON object")
    for key in ("model_sha256", "versions", "features"):
        if key not in manifest:
            raise ArtifactError(f"manifest {path} lacks {key!r}")
    return manifest


def dvc_lock(path: Path) -> dict[str, Any]:
    """The parsed dvc.lock, or an ArtifactError naming what is wrong with it."""
    try:
        return lockfile.read_dvc_lock(path)
    except lockfile.LockError as error:
        raise ArtifactError(str(error)) from None


def _check_locked(payload: bytes, path: Path, lock: dict[str, Any], lock_path: Path) -> None:
    # abspath, not resolve: a DVC symlink-cached output lives elsewhere, but
    # dvc.lock records the workspace path.
    root = Path(os.path.abspath(lock_path)).parent
    try:
        relative = Path(os.path.abspath(path)).relative_to(root).as_posix()
    except ValueError:
        raise ArtifactError(f"{path} is outside {root}, so {lock_path} cannot vouch for it") from None
    try:
        recorded = lockfile.locked_md5(lock, relative, lock_path)
    except lockfile.LockError as error:
        raise ArtifactError(str(error)) from None
    digest = hashlib.md5(payload).hexdigest()
    if digest != recorded:
        raise ArtifactError(
            f"refusing to load {path}: its MD5 {digest} does not match {recorded} recorded in {lock_path} "
            f"(modified, or the lock is from another run: `dvc checkout` or `dvc repro`)"
        )


def version_mismatches(recorded: dict[str, str], running: dict[str, str] | None = None) -> list[str]:
    running = runtime_versions() if running is None else running
    return [
        f"{name}: trained with {recorded[name]}, running {running.get(name, 'not installed')}"
        for name in sorted(recorded)
        if running.get(name) != recorded[name]
    ]


def load_model(
    model_path: Path, manifest_path: Path, allow_version_mismatch: bool = False, lock_path: Path | None = None
) -> tuple[Any, dict]:
    """Verify, then unpickle. Returns (model, manifest).

    With `lock_path`, the model and the manifest must also match the outputs
    recorded in that dvc.lock. Every check runs on the bytes read once, before
    unpickling, so the file that is verified is the file that is loaded, and
    unpickling resolves only ALLOWED_GLOBALS (dvc.lock is the root of trust, and
    an edit to it shows only in `git status`).
    `allow_version_mismatch` is the expert override: the model is loaded on
    other library versions, with a loud warning, and may predict differently.
    """
    manifest_bytes = _manifest_bytes(manifest_path)
    if lock_path is not None:
        lock = dvc_lock(lock_path)
        _check_locked(manifest_bytes, manifest_path, lock, lock_path)
    manifest = _parse_manifest(manifest_bytes, manifest_path)
    try:
        payload = Path(model_path).read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"model {model_path} not found: run `dvc repro train` or `dvc pull`") from None
    if lock_path is not None:
        _check_locked(payload, model_path, lock, lock_path)
    digest = hashlib.sha256(payload).hexdigest()
    if digest != manifest["model_sha256"]:
        raise ArtifactError(
            f"refusing to load {model_path}: its SHA-256 {digest} does not match the manifest's "
            f"{manifest['model_sha256']} (tampered, or from another run)"
        )
    mismatches = version_mismatches(manifest["versions"])
    if mismatches:
        if not allow_version_mismatch:
            raise VersionMismatchError(
                "refusing to load the model in an environment other than the one it was trained in "
                "(install requirements.lock, or override at your own risk):\n  " + "\n  ".join(mismatches)
            )
        log.warning("LOADING MODEL DESPITE VERSION MISMATCH; predictions may differ:\n  %s", "\n  ".join(mismatches))
    return loads(payload, model_path), manifest
