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


# The DAG under each retraining policy (`model.retrain`): its schedule, and its `publish` task,
# which starts training only for a feature set that was built, never for a reused one.
POLICIES = """
import json, runpy, sys
from collections import defaultdict
from types import SimpleNamespace
sys.path.insert(0, sys.argv[1])
from airflow.sdk.exceptions import AirflowSkipException
from ml.retrain_policy import policy_of
build = runpy.run_path(sys.argv[1] + "/preprocess.py")["build"]
out = {}
for name, spec in json.loads(sys.argv[2]).items():
    dag = build("flights", ["weather"], policy=policy_of(spec))
    tt, schedule = dag.timetable, dag.timetable.asset_condition
    publish = dag.get_task("publish").python_callable
    events = defaultdict(SimpleNamespace)
    built = {"ref": "s3://features/flights/fv-1", "feature_version": "fv-1", "reused": False}
    publish(built, outlet_events=events)
    try:
        publish({**built, "reused": True}, outlet_events=defaultdict(SimpleNamespace))
        skipped = None
    except AirflowSkipException as exc:
        skipped = str(exc)
    out[name] = {
        "timetable": type(tt).__name__,
        "cron": getattr(tt, "expression", None),
        "delta_days": tt.delta.days if hasattr(tt, "delta") else None,
        "assets": sorted(a.uri for a in getattr(schedule, "objects", [schedule])) if schedule else [],
        "tasks": sorted(dag.task_ids),
        "outlets": [a.uri for a in dag.get_task("publish").outlets],
        "build_outlets": [a.uri for a in dag.get_task("build_features").outlets],
        "published": [vars(e)["extra"] for e in events.values()],
        "skipped": skipped,
        "doc": dag.doc_md.splitlines()[-1],
        "date_from": dag.params.get_param("date_from").description,
    }
print(json.dumps(out))
"""


def _probe(tmp_path, code: str, *args: str) -> dict:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db",
    }
    out = subprocess.run(
        [sys.executable, "-c", code, str(DAGS), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_schedule_follows_the_retraining_policy(tmp_path):
    policies = {
        "default": None,
        "each_batch": {"every": "each_batch"},
        "weekly": {"every": "7d", "window": "90d"},
        "fortnightly": {"every": "14d"},
        "on_drift": {"every": "on_drift"},
    }
    dags = _probe(tmp_path, POLICIES, json.dumps(policies))
    validated = ["s3://validated/flights", "s3://validated/weather"]
    # each_batch (and the default): a new validated batch of flights and of weather starts it.
    for name in ("default", "each_batch"):
        assert dags[name]["timetable"] == "AssetTriggeredTimetable", name
        assert dags[name]["assets"] == validated, name
    # A cadence: the clock alone (a cron where one states it exactly), no asset starts it.
    assert dags["weekly"] | {"assets": []} == dags["weekly"]
    assert (dags["weekly"]["timetable"], dags["weekly"]["cron"]) == (
        "CronTriggerTimetable",
        "0 0 * * 1",
    )
    assert (dags["fortnightly"]["timetable"], dags["fortnightly"]["delta_days"]) == (
        "DeltaTriggerTimetable",
        14,
    )
    assert dags["fortnightly"]["assets"] == []
    # on_drift: no schedule at all; batch_score's drift check triggers it.
    assert (dags["on_drift"]["timetable"], dags["on_drift"]["assets"]) == ("NullTimetable", [])
    # The policy is in the DAG's documentation, the window in the trigger form.
    assert dags["weekly"]["doc"].endswith(
        "every 7d, when new validated data came in, over the last 90 validated days."
    )
    assert "the last 90 validated days" in dags["weekly"]["date_from"]
    assert dags["default"]["date_from"] == "Empty: from the first validated day."


def test_a_reused_feature_set_starts_no_training(tmp_path):
    dags = _probe(tmp_path, POLICIES, json.dumps({"default": None, "weekly": {"every": "7d"}}))
    for name, dag in dags.items():
        assert dag["tasks"] == ["build_features", "publish"], name
        # Only `publish` raises the features asset (train_<dataset>'s schedule) ...
        assert dag["build_outlets"] == [] and dag["outlets"] == ["s3://features/flights"], name
        # ... with the new feature set ...
        assert dag["published"] == [
            {"feature_set": "s3://features/flights/fv-1", "feature_version": "fv-1"}
        ], name
        # ... and is skipped (no asset event, no training) when the feature set was reused.
        assert dag["skipped"] and "fv-1 was reused" in dag["skipped"], name
        assert "no new training" in dag["skipped"], name
