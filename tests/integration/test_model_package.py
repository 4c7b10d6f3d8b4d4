"""The registered model is self-contained: trained and logged by the real training code on real
servers (S3 API, MLflow), it loads and predicts in a fresh venv where mlpipe is not installed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from tests.integration import _models

pytestmark = pytest.mark.integration

DATASET = "pkgsynth"
PARAMS = {"epochs": 1, "hidden": 8, "layers": 1, "emb_dim": 2, "batch_size": 256}

# What the model must not need, blocked in the fresh venv by a meta-path finder. (`yaml` is not
# on the list: MLflow itself reads the MLmodel file with it.)
BLOCKED = (
    "pydantic_settings",
    "s3fs",
    "dask",
    "distributed",
    "great_expectations",
    "airflow",
    "sklearn",
)

# Runs in the fresh venv, from an empty folder: argv = model URI, raw rows (parquet), blocked.
LOAD = """
import importlib.abc, json, sys

BLOCKED = set(sys.argv[3].split(","))


class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the model must not need it")
        return None


sys.meta_path.insert(0, Blocked())
try:
    import ml
except ModuleNotFoundError:
    pass
else:
    sys.exit(f"mlpipe is importable in the fresh venv: {ml.__file__}")

import mlflow.pyfunc
import pandas as pd

model = mlflow.pyfunc.load_model(sys.argv[1])
out = model.predict(pd.read_parquet(sys.argv[2]))
print(json.dumps({
    "columns": list(out.columns),
    "probability": out["probability"].tolist(),
    "ml": sys.modules["ml"].__file__,
    "ml_modules": sorted(m for m in sys.modules if m == "ml" or m.startswith("ml.")),
}))
"""


def fresh_venv(folder: Path) -> Path:
    """A venv without pip and without mlpipe that sees this venv's libraries through a plain
    path line in a `.pth` file (which does not run mlpipe's editable-install finder)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.fixture(scope="module")
def registered(s3_server, mlflow_server, tmp_path_factory):
    """(model URI, feature set ref, sys.path before): one small model trained and registered by
    the real training code."""
    from ml.training.run import train

    folder = tmp_path_factory.mktemp("registered")
    contract = _models.contract_as(folder, DATASET)
    ref = _models.synthetic_feature_set(DATASET, "fv-package", contract, rows=2000)
    path_before = list(sys.path)
    result = train(ref, PARAMS)
    return f"models:/{result.model_name}/{result.version}", ref, path_before


def test_the_registered_model_loads_and_predicts_without_mlpipe(
    registered, mlflow_server, tmp_path
):
    import mlflow

    from ml import tracking
    from ml.features import sets
    from ml.training.package import SHIPPED_MODULES

    uri, ref, path_before = registered
    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "model")))
    shipped = sorted(str(p.relative_to(local / "code")) for p in (local / "code").rglob("*.py"))
    assert len(shipped) == len(SHIPPED_MODULES) and "ml/training/model.py" in shipped
    # Code and data, no pickle: the entry file, JSON and plain arrays.
    files = {str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()}
    assert {"MLmodel", "model_code.py", "artifacts/weights.npz", "artifacts/config.json"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pt", ".pth", ".pickle"))], files
    requirements = (local / "requirements.txt").read_text().split()
    assert not [r for r in requirements if r.startswith("mlpipe")]
    assert any(r.startswith("torch==") for r in requirements)

    raw = sets.read_split(sets.read_feature_manifest(ref), "eval")
    raw.to_parquet(tmp_path / "rows.parquet")
    expected = tracking.load_model(uri).predict(raw)["probability"].to_numpy()
    # Logging and loading put the model's code on sys.path only for a while: a process started
    # from this one afterwards (a Dask worker) imports the library, not the model's copy.
    assert sys.path == path_before

    python = fresh_venv(tmp_path / "venv")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["MLFLOW_TRACKING_URI"] = mlflow_server
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    # MLflow's own switch: a model that needs unpickling would fail to load here.
    env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    done = subprocess.run(
        [str(python), "-c", LOAD, uri, str(tmp_path / "rows.parquet"), ",".join(BLOCKED)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["columns"] == ["probability"]
    # The model's own copy of the code, nothing else of mlpipe.
    assert "/code/ml/" in out["ml"] and not out["ml"].startswith(str(_models.REPO))
    assert set(out["ml_modules"]) <= set(SHIPPED_MODULES)
    np.testing.assert_allclose(out["probability"], expected, rtol=1e-6, atol=1e-7)


# --- a tampered artifact store: nothing in it is unpickled or run by scoring --------------------


class Payload:
    """Unpickled, it creates the marker file (`open(marker, "w")`): proof that it ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _store_folder(uri: str) -> str:
    """The model's folder in the real artifact store behind the MLflow server (S3 API)."""
    from ml import tracking

    name, version = uri.removeprefix("models:/").split("/")
    location = tracking.client().get_model_version_download_uri(name, version)
    prefix = "mlflow-artifacts:"
    assert location.startswith(prefix), location
    return "mlflow/artifacts/" + location.removeprefix(prefix).strip("/")


def _tamper(kind: str, marker: str) -> dict[str, bytes]:
    """What `kind` writes into the store, by file (relative to the model's folder)."""
    import io
    import pickle

    import torch

    payload = pickle.dumps(Payload(marker))
    if kind == "a python_model.pkl beside the model":
        return {"python_model.pkl": payload}
    if kind == "weights replaced by a torch pickle":
        buf = io.BytesIO()
        torch.save({"mlp.0.weight": Payload(marker)}, buf)
        return {"artifacts/weights.npz": buf.getvalue()}
    if kind == "MLmodel pointed at a pickled python_model":
        return {"python_model.pkl": payload, "MLmodel": b"pickled"}  # MLmodel edited below
    assert kind == "entry file replaced by other code"
    return {"model_code.py": f"open({marker!r}, 'w')\n".encode()}


@pytest.mark.parametrize(
    "kind, refused",
    [
        ("a python_model.pkl beside the model", None),
        ("weights replaced by a torch pickle", r"weights\.npz: not a plain-array weights file"),
        ("MLmodel pointed at a pickled python_model", "loader 'mlflow.pyfunc.model' is not"),
        ("entry file replaced by other code", "model_code.py is not mlpipe's entry file"),
    ],
)
def test_a_tampered_model_in_the_artifact_store_is_not_run_by_scoring(
    registered, mlflow_server, tmp_path, monkeypatch, kind, refused
):
    """Files written straight into the S3 artifact store (as anyone who can write it could):
    scoring (`ml.score.predict_partition`, as a Dask worker runs it, loading through
    `ml.tracking.load_model`) ignores what the model does not name, and refuses what would
    unpickle or run code; the payload never runs."""
    from ml import score, storage
    from ml.features import sets

    uri, ref, _ = registered
    raw = sets.read_split(sets.read_feature_manifest(ref), "eval").head(50)
    keys = list(raw.columns[:1])
    monkeypatch.setattr(score, "_MODELS", {})  # a fresh worker: nothing loaded yet
    expected = score.predict_partition(raw, uri, mlflow_server, "1", 0.5, keys)

    fs = storage.filesystem()
    folder = _store_folder(uri)
    marker = tmp_path / "payload-ran"
    files = _tamper(kind, str(marker))
    if "MLmodel" in files:
        mlmodel = fs.cat(f"{folder}/MLmodel").decode()
        old = "loader_module: mlflow.pyfunc.loaders.code_model"
        assert old in mlmodel
        edited = old.replace("loaders.code_model", "model") + "\n    python_model: python_model.pkl"
        # ... and no entry file, so that MLflow would take the pickle.
        mlmodel = re.sub(r"\n +model_code_path: [^\n]*", "", mlmodel.replace(old, edited))
        assert "model_code_path" not in mlmodel
        files["MLmodel"] = mlmodel.encode()
    saved = {f: fs.cat(f"{folder}/{f}") for f in files if fs.exists(f"{folder}/{f}")}
    try:
        for name, data in files.items():
            fs.pipe(f"{folder}/{name}", data)
        monkeypatch.setattr(score, "_MODELS", {})
        try:
            out, error = score.predict_partition(raw, uri, mlflow_server, "1", 0.5, keys), None
        except Exception as exc:  # checked below, once the marker is
            out, error = None, exc
        assert not marker.exists(), f"{kind}: the payload ran"
        if refused is None:
            assert error is None, error
            assert out["probability"].tolist() == expected["probability"].tolist()
        else:
            assert error is not None and re.search(refused, str(error)), error
    finally:
        for name in files:
            if name in saved:
                fs.pipe(f"{folder}/{name}", saved[name])
            else:
                fs.rm(f"{folder}/{name}")
