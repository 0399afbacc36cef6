"""The model is unpickled only when its bytes and the environment match the manifest."""
from __future__ import annotations

import json
import logging
import shutil

import pytest

from src.pipeline import artifact, config


@pytest.fixture
def artifacts(tmp_path, reproduced):
    # Copies of a freshly trained model (a clean clone has no DVC outputs).
    model, manifest = tmp_path / "model.pkl", tmp_path / "manifest.json"
    shutil.copy(reproduced / config.MODEL.relative_to(config.ROOT), model)
    shutil.copy(reproduced / config.MANIFEST.relative_to(config.ROOT), manifest)
    return model, manifest


def test_loads_when_everything_matches(artifacts):
    model, manifest = artifact.load_model(*artifacts)
    assert hasattr(model, "predict_proba") and manifest["model_sha256"]


def test_tampered_model_is_never_unpickled(artifacts, tmp_path):
    model_path, manifest_path = artifacts
    # A pickle that would create a file if it were ever loaded.
    marker = tmp_path / "pwned"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    model_path.write_bytes(payload)
    with pytest.raises(artifact.ArtifactError, match="does not match the manifest"):
        artifact.load_model(model_path, manifest_path)
    assert not marker.exists()


def test_version_mismatch_is_refused_and_names_packages(artifacts, caplog):
    model_path, manifest_path = artifacts
    manifest = json.loads(manifest_path.read_text())
    manifest["versions"]["scikit-learn"] = "0.24.2"
    manifest["versions"]["python"] = "3.8.0"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(artifact.ArtifactError) as error:
        artifact.load_model(model_path, manifest_path)
    assert "scikit-learn: trained with 0.24.2" in str(error.value)
    assert "python: trained with 3.8.0" in str(error.value)
    with caplog.at_level(logging.WARNING):
        model, _ = artifact.load_model(model_path, manifest_path, allow_version_mismatch=True)
    assert "DESPITE VERSION MISMATCH" in caplog.text and hasattr(model, "predict_proba")


def test_bad_manifest_is_named(artifacts, tmp_path):
    model_path, manifest_path = artifacts
    manifest_path.write_text("{not json")
    with pytest.raises(artifact.ArtifactError, match="not valid JSON"):
        artifact.load_model(model_path, manifest_path)
    with pytest.raises(artifact.ArtifactError, match="not found"):
        artifact.load_model(model_path, tmp_path / "absent.json")
