"""The ingest DAG's retry policy: each source error gets the retry its kind deserves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

DAGS = Path(__file__).resolve().parents[2] / "dags"

# Runs in a fresh interpreter, as the DAG processor would: dags/ on sys.path, the file executed.
PROBE = """
import json, runpy, sys
sys.path.insert(0, sys.argv[1])
policy = runpy.run_path(sys.argv[1] + "/ingest.py")["SOURCE_RETRY_POLICY"]
from ml.contracts import ContractError
from ml.sources.errors import SourceError, SourceNotFound, TransientSourceError, UnreadableInput
from ml.storage import BatchNotFoundError
from ml.chunks import ChunkFailed
errors = [UnreadableInput, TransientSourceError, SourceNotFound, BatchNotFoundError, SourceError,
          ContractError, ChunkFailed, RuntimeError]
print(json.dumps({e.__name__: policy.evaluate(e("x"), 1, 3).action.name for e in errors}))
"""


def test_source_errors_are_retried_by_kind(tmp_path):
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
    assert "could not be imported" not in out.stderr  # every exception path resolves
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "UnreadableInput": "FAIL",  # kept in quarantine: a retry reads the same bytes
        "TransientSourceError": "DEFAULT",  # the task's retries, exponential backoff
        "SourceNotFound": "DEFAULT",
        "BatchNotFoundError": "DEFAULT",
        "SourceError": "FAIL",
        "ContractError": "FAIL",
        "ChunkFailed": "FAIL",  # nothing of a chunk went, for lasting reasons
        "RuntimeError": "DEFAULT",
    }
