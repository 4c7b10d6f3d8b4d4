"""The registered model is self-contained: trained and logged by the real training code on real
servers (S3 API, MLflow), it loads and predicts in a fresh venv where mlpipe is not installed."""

from __future__ import annotations

import json
import os
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


def test_the_registered_model_loads_and_predicts_without_mlpipe(s3_server, mlflow_server, tmp_path):
    import mlflow

    from ml import tracking
    from ml.features import sets
    from ml.training.package import SHIPPED_MODULES
    from ml.training.run import train

    contract = _models.contract_as(tmp_path, DATASET)
    ref = _models.synthetic_feature_set(DATASET, "fv-package", contract, rows=2000)
    path_before = list(sys.path)
    result = train(ref, PARAMS)
    uri = f"models:/{result.model_name}/{result.version}"

    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "model")))
    shipped = sorted(str(p.relative_to(local / "code")) for p in (local / "code").rglob("*.py"))
    assert len(shipped) == len(SHIPPED_MODULES) and "ml/training/model.py" in shipped
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
