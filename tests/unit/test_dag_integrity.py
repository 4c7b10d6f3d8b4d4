"""Every DAG imports cleanly, parses fast, and keeps heavy libraries out of module level."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml.contracts import load_contract

pytestmark = pytest.mark.unit

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(DAGS.glob("[!_]*.py"))  # `_*.py`: modules the DAG files share
KINDS = (
    "batch_score",
    "ingest",
    "validate",
    "preprocess",
    "train",
    "promote",
    "rollback",
    "quarantine",
)
HEAVY = (
    "torch",
    "dask",
    "distributed",
    "great_expectations",
    "mlflow",
    "pandas",
    "pyarrow",
    "s3fs",
)

# Runs in a fresh interpreter: airflow.sdk is imported first (its cost is not the DAG file's),
# then the DAG file is executed and timed, and the heavy modules it pulled in are listed.
PROBE = """
import json, os, runpy, sys, time
import airflow.sdk
sys.path.insert(0, os.path.dirname(sys.argv[1]))  # as the DAG processor does for the dags folder
before = set(sys.modules)
t = time.perf_counter()
runpy.run_path(sys.argv[1])
elapsed = time.perf_counter() - t
heavy = sorted({m.split('.')[0] for m in set(sys.modules) - before} & set(sys.argv[2].split(',')))
print(json.dumps({"seconds": elapsed, "heavy": heavy}))
"""


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow_home")
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }


def test_there_are_dag_files():
    assert {p.stem for p in DAG_FILES} >= {
        "ingest",
        "validate",
        "preprocess",
        "train",
        "promote",
        "batch_score",
        "operations",
    }


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_fast_without_heavy_imports(path, airflow_env):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), ",".join(HEAVY)],
        env=airflow_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], f"{path.name} imports {result['heavy']} at module level"
    assert result["seconds"] < 1.0, f"{path.name} took {result['seconds']:.2f}s to parse"


def _kind_and_dataset(dag_id: str) -> tuple[str, str]:
    kind = next(k for k in KINDS if dag_id.startswith(f"{k}_"))
    return kind, dag_id.removeprefix(f"{kind}_")


def test_dagbag_has_no_import_errors_and_the_whole_chain(airflow_env):
    code = """
import json, sys
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag
# As the DAG processor parses: the bundle's folder (dags/) is on sys.path.
bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=Path(sys.argv[1]).parent if sys.argv[1].endswith('.py') else Path(sys.argv[1]))
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d.dag_id: {
        "doc": bool(d.doc_md), "tags": sorted(d.tags), "tasks": sorted(d.task_ids),
        "owner": d.owner, "owner_links": d.owner_links or {}, "display": d.dag_display_name,
        "dagrun_timeout": d.dagrun_timeout.total_seconds() if d.dagrun_timeout else None,
        "limits": {t.task_id: [t.retries, bool(t.execution_timeout)] for t in d.tasks},
        "params": {k: sorted(d.params.get_param(k).schema) for k in d.params},
    } for d in bag.dags.values()},
}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code, str(DAGS)],
        env=airflow_env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    dags = result["dags"]
    expected = {
        "ingest_flights",
        "ingest_weather",
        "validate_flights",
        "validate_weather",
        "preprocess_flights",
        "train_flights",
        "promote_flights",
        "batch_score_flights",
        "rollback_flights",
        "quarantine_flights",
        "quarantine_weather",
    }
    assert expected <= set(dags)
    for dag_id, info in dags.items():
        assert info["doc"], f"{dag_id} has no doc_md"
        assert info["tags"], f"{dag_id} has no tags"
        assert info["dagrun_timeout"], f"{dag_id} has no dagrun_timeout"
        for task_id, (retries, timeout) in info["limits"].items():
            assert retries >= 1 and timeout, f"{dag_id}.{task_id}: retries {retries}, timeout"
        for name, schema in info["params"].items():  # the trigger form: titled, in sections
            assert {"title", "section"} <= set(schema), f"{dag_id} param {name}: {schema}"
        # The contract's owner owns every task, with a mail link; the name says what it does.
        kind, dataset = _kind_and_dataset(dag_id)
        owner = load_contract(dataset).owner
        assert info["owner"] == owner, (dag_id, info["owner"], owner)
        assert info["owner_links"] == {owner: f"mailto:{owner}"}, dag_id
        assert info["display"].startswith(f"{dataset}: "), (kind, info["display"])
    assert dags["train_flights"]["tasks"] == ["baseline", "compress", "feature_set", "train_model"]
    assert dags["promote_flights"]["tasks"] == ["promote"]
    # A contract that wants a person's approval gets it between the decision and the move.
    assert dags["promote_flights_delay_class"]["tasks"] == ["approve", "evaluate", "promote"]
    assert dags["rollback_flights"]["tasks"] == ["rollback"]
    assert dags["quarantine_flights"]["tasks"] == ["act"]
    assert "rollback_weather" not in dags  # a contract without a model has nothing to roll back
    assert dags["batch_score_flights"]["tasks"] == ["drifted", "plan", "retrain", "score"]
    # Outputs have contracts too, but they are not datasets to ingest or validate.
    assert not any(d.endswith("_predictions") for d in dags)
