"""The promote DAG's edge: Params and challenger events become the library's plain arguments,
and its Params' defaults come from the library's rule (no servers, no Airflow services)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

DAGS = Path(__file__).resolve().parents[2] / "dags"

# Runs the DAG file as the DAG processor does (dags/ on sys.path), then calls its edge function
# with Params and event extras as Airflow hands them over.
PROBE = """
import json, os, runpy, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
g = runpy.run_path(sys.argv[1])
from ml.contracts import load_contract
contract = load_contract("flights")
dag = g["build"]("flights", contract)
name = contract.model_name
extras = [
    {"model_name": name, "version": "5", "eval_snapshot": "s3://features/flights/fv-5/eval"},
    {"model_name": "other_model", "version": "9"},
    {"model_name": name, "version": "6", "eval_snapshot": "s3://features/flights/fv-6/eval"},
    {"model_name": name},
]
defaults = {k: dag.params[k] for k in dag.params}
def call(params, extras, user=""):
    args = g["promotion_arguments"](params, extras, contract, user)
    return {**args, "rule": args["rule"].to_dict()}
print(json.dumps({
    "param_defaults": defaults,
    "enum": dag.params.get_param("metric").schema["enum"],
    "by_event": call(defaults, extras),
    # the Airflow user who triggered the run asks; a Param cannot say who asks
    "by_param": call({**defaults, "model_version": "2", "force": True, "requested_by": "mallory",
                      "min_improvement": 0.0, "guardrails": {}}, extras, "bob"),
    "nothing": call(defaults, []),
    "params": sorted(defaults),
}))
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAGS / "promote.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_params_defaults_come_from_the_contract_and_the_library(probe):
    from ml.contracts import load_contract
    from ml.promotion_rule import DEFAULT_GUARDRAILS, KNOWN_METRICS, DecisionRule

    rule = DecisionRule.for_contract(load_contract("flights").model)
    defaults = probe["param_defaults"]
    assert defaults["metric"] == rule.metric
    assert defaults["min_improvement"] == rule.min_improvement
    assert defaults["guardrails"] == dict(DEFAULT_GUARDRAILS)
    assert probe["enum"] == list(KNOWN_METRICS)
    assert defaults["force"] is False and defaults["model_version"] is None
    assert "requested_by" not in probe["params"]  # who asks is the run's user, not a field


def test_the_newest_challenger_event_of_this_model_names_version_and_snapshot(probe):
    args = probe["by_event"]
    assert args["version"] == "6"
    assert args["eval_snapshot"] == "s3://features/flights/fv-6/eval"
    assert args["force"] is False and args["requested_by"] == ""


def test_a_person_s_version_force_and_rule_win_over_events(probe):
    args = probe["by_param"]
    assert args["version"] == "2" and args["eval_snapshot"] is None  # its own feature set's
    assert args["force"] is True and args["requested_by"] == "bob"
    assert args["rule"]["min_improvement"] == 0.0 and args["rule"]["guardrails"] == {}


def test_no_param_and_no_event_leaves_the_version_to_the_challenger_alias(probe):
    args = probe["nothing"]
    assert args["version"] is None and args["eval_snapshot"] is None
    assert args["requested_by"] == ""


RETRY_PROBE = """
import json, runpy, sys
sys.path.insert(0, sys.argv[1])
policy = runpy.run_path(sys.argv[1] + "/promote.py")["PROMOTION_RETRY_POLICY"]
from ml.model_versions import RegistryUnavailable
from ml.promotion_rule import EvaluationError
from ml.registry import RegistryError
errors = [RegistryUnavailable, EvaluationError, RegistryError]
print(json.dumps({e.__name__: policy.evaluate(e("x"), 1, 3).action.name for e in errors}))
"""


def test_a_registry_that_did_not_answer_is_retried_a_refusal_is_not(tmp_path):
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db",
    }
    out = subprocess.run(
        [sys.executable, "-c", RETRY_PROBE, str(DAGS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    actions = json.loads(out.stdout.strip().splitlines()[-1])
    assert actions == {
        "RegistryUnavailable": "DEFAULT",  # the task's retries, exponential backoff
        "EvaluationError": "FAIL",
        "RegistryError": "FAIL",
    }
