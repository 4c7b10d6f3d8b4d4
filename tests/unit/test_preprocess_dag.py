"""The preprocess DAG's Params restate no library default: they are read from the library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml.features.transform import DEFAULT_MIN_FREQUENCY

pytestmark = pytest.mark.unit

DAGS = Path(__file__).resolve().parents[2] / "dags"

PROBE = """
import json, runpy, sys
sys.path.insert(0, sys.argv[1])
dag = runpy.run_path(sys.argv[1] + "/preprocess.py")["build"]("flights", ["weather"])
print(json.dumps({k: dag.params[k] for k in ("date_from", "date_to", "min_frequency")}))
"""


def test_min_frequency_defaults_to_the_transform_default(tmp_path):
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAGS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    params = json.loads(out.stdout.strip().splitlines()[-1])
    assert params == {"date_from": None, "date_to": None, "min_frequency": DEFAULT_MIN_FREQUENCY}
