"""Every task of every DAG retries by failure kind with exponential backoff and has an execution
timeout from the one table in dags/_mlpipe.py; every DAG has a run timeout; the ingest DAG
publishes its good days and names the bad ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

DAGS = Path(__file__).resolve().parents[2] / "dags"

PROBE = """
import json, sys
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag
bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=Path(sys.argv[1]))
sys.path.insert(0, sys.argv[1])
import _mlpipe
from ml.errors import BadInputError, ConfigurationError, NotFoundError, RefusedError, TransientError
from ml.validation.outcome import ContractViolation
from ml.commit import BatchIntegrityError
errors = [BadInputError, ContractViolation, ConfigurationError, RefusedError, BatchIntegrityError,
          TransientError, NotFoundError, ConnectionError, TimeoutError, PermissionError, RuntimeError]
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d.dag_id: {
        "dagrun_timeout": d.dagrun_timeout.total_seconds() if d.dagrun_timeout else None,
        "tasks": {t.task_id: {
            "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
            "retries": t.retries,
            "backoff": t.retry_exponential_backoff,
            "policy": t.retry_policy is not None,
            "trigger_rule": str(t.trigger_rule),
        } for t in d.tasks}} for d in bag.dags.values()},
    "actions": {e.__name__: _mlpipe.RETRY_POLICY.evaluate(e("x"), 1, 3).action.name
                for e in errors},
    "verdict": {e.__name__: _mlpipe.VERDICT_POLICY.evaluate(e("x"), 1, 3).action.name
                for e in (RuntimeError, ConnectionError)},
    "policies": {d.dag_id: {t.task_id: t.retry_policy is _mlpipe.VERDICT_POLICY
                            for t in d.tasks} for d in bag.dags.values()},
}))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAGS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "could not be imported" not in out.stderr  # every exception path resolves
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_task_has_a_timeout_and_retries_by_kind_with_backoff(parsed):
    assert parsed["errors"] == {}
    assert {d.split("_")[0] for d in parsed["dags"]} >= {
        "ingest",
        "validate",
        "preprocess",
        "train",
        "promote",
        "batch",
    }
    for dag_id, dag in parsed["dags"].items():
        assert dag["dagrun_timeout"], dag_id
        for task_id, t in dag["tasks"].items():
            where = f"{dag_id}.{task_id}"
            assert t["timeout"] and t["timeout"] < dag["dagrun_timeout"], where
            assert t["policy"] and t["retries"] >= 1 and t["backoff"], where


def test_validate_retries_transient_errors(parsed):
    validate = parsed["dags"]["validate_flights"]["tasks"]["validate"]
    assert validate["retries"] >= 2  # an S3 blip must not strand a raw batch


def test_bad_input_and_contract_violations_never_retry_infrastructure_does(parsed):
    assert parsed["actions"] == {
        "BadInputError": "FAIL",
        "ContractViolation": "FAIL",
        "ConfigurationError": "FAIL",
        "RefusedError": "FAIL",
        "BatchIntegrityError": "FAIL",
        "TransientError": "DEFAULT",  # the task's retries, exponential backoff
        "NotFoundError": "DEFAULT",
        "ConnectionError": "DEFAULT",
        "TimeoutError": "DEFAULT",
        "PermissionError": "FAIL",
        "RuntimeError": "DEFAULT",  # unknown: a lost Dask worker, an S3 5xx
    }


def test_a_runs_verdict_fails_at_once(parsed):
    """The verdict names what did not go through; a retry would read the same outcomes (seen:
    two retries with backoff added 30 s to every run with a bad day)."""
    assert parsed["verdict"] == {"RuntimeError": "FAIL", "ConnectionError": "DEFAULT"}
    for dag_id in ("ingest_flights", "validate_flights"):
        assert parsed["policies"][dag_id]["verdict"] is True
        assert parsed["policies"][dag_id]["publish"] is False


def test_ingest_publishes_good_days_and_fails_naming_the_bad_ones(parsed):
    tasks = parsed["dags"]["ingest_flights"]["tasks"]
    assert tasks["publish"]["trigger_rule"].lower().endswith("all_done")
    assert tasks["verdict"]["trigger_rule"].lower().endswith("all_done")
    from ml.chunks import verdict_message  # what the verdict task raises (tests/unit/test_chunks)

    results = [{"key": "2013-01-01", "result": {"ref": "s3://raw/x/date=2013-01-01/b"}}]
    assert "1 of 2 flights partition(s)" in verdict_message(
        "flights", ["2013-01-01", "2013-01-02"], results
    )
    assert verdict_message("flights", ["2013-01-01"], results) == ""
