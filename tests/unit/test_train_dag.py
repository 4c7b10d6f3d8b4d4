"""The train DAG's wiring: GPU work in the `gpu` pool and queue, retries, baseline first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from ml.training.params import CompressParams, TrainParams

pytestmark = pytest.mark.unit

DAGS = Path(__file__).resolve().parents[2] / "dags"

PROBE = """
import json, sys
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag
# As the DAG processor parses: the bundle's folder (dags/) is on sys.path.
bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=Path(sys.argv[1]).parent if sys.argv[1].endswith('.py') else Path(sys.argv[1]))
dag = bag.dags["train_flights"]
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "tasks": {t.task_id: {"pool": t.pool, "queue": t.queue, "retries": t.retries,
                          "upstream": sorted(t.upstream_task_ids)} for t in dag.tasks},
    "params": {k: dag.params[k] for k in dag.params},
}))
"""


def test_training_runs_in_the_gpu_pool_and_queue_with_retries(tmp_path):
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAGS / "train.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    tasks = result["tasks"]
    train = tasks["train_model"]
    assert (train["pool"], train["queue"]) == ("gpu", "gpu")
    assert train["retries"] >= 1
    assert {"feature_set", "baseline"} <= set(train["upstream"])
    assert tasks["baseline"]["pool"] != "gpu" and tasks["baseline"]["queue"] != "gpu"
    assert tasks["compress"]["upstream"] == ["train_model"]
    assert result["params"]["precision"] == "auto" and result["params"]["compress"] is False
    # The Params' defaults are the library's (not restated in the DAG file).
    library = {**asdict(TrainParams()), **asdict(CompressParams())}
    assert {k: result["params"][k] for k in library} == library
