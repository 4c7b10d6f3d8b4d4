"""The whole chain in the local stack's `secure` mode, as compose deploys it: the S3 server
enforces the policies of `infra/minio/policies` with one user per stage (each task runs under
its stage's Airflow connection), Airflow has real users and passwords, MLflow basic auth is on.
Anonymous callers are refused; the pipeline still runs from ingest to scoring."""

from __future__ import annotations

import pytest
import requests

from ml import partitions, storage
from ml.dev.stack import auth, secure_s3
from ml.identity import use_identity
from tests.e2e.secure.conftest import DATASET, DATE_FROM, DATE_TO

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def runs(chains):
    return chains[DATASET]


def test_anonymous_callers_are_refused(secure_stack):
    airflow = requests.get(f"{secure_stack.airflow_api_url}/api/v2/dags", timeout=30)
    assert airflow.status_code in (401, 403), airflow.status_code
    mlflow = requests.post(
        f"{secure_stack.mlflow_tracking_uri}/api/2.0/mlflow/experiments/search",
        json={"max_results": 1},
        timeout=30,
    )
    assert mlflow.status_code == 401, mlflow.status_code


def test_the_chain_runs_under_per_stage_identities(runs, secure_stack):
    states = {dag_id: run["state"] for dag_id, run in runs.items()}
    assert {
        f"{stage}_{DATASET}" for stage in ("ingest", "validate", "train", "batch_score")
    } <= set(states)
    assert set(states.values()) == {"success"}, states
    # What the stages wrote is there (read with the admin's keys: the process's own have none).
    with use_identity(secure_s3.admin_identity(secure_stack)):
        raw = storage.latest_batches("raw", DATASET)
        validated = storage.latest_batches("validated", DATASET)
        predictions = storage.latest_batches("predictions", DATASET)
    days = {f"date={d}" for d in partitions.keys_between(DATE_FROM, DATE_TO, "day")}
    assert days <= set(raw) and days <= set(validated)
    assert predictions, "the champion scored nothing"


def test_the_process_keys_alone_can_touch_nothing(runs, secure_stack):
    """Outside any stage identity, the stack's S3 server refuses (the identities are real)."""
    with pytest.raises(PermissionError):
        storage.latest_batches("raw", DATASET)


def test_mlflow_was_written_by_the_stage_users(runs, secure_stack):
    """The train tasks created the model (its creator manages it), the promote tasks could move
    its aliases through their role; the reader every other task and Dask use has no more than
    the server's default."""
    from mlflow.server.auth.client import AuthServiceClient

    from ml import contracts, tracking

    model = contracts.load_contract(DATASET).model_name
    admin = AuthServiceClient(secure_stack.mlflow_tracking_uri)
    with tracking.environ(auth.client_env(secure_stack)):
        effective = {
            role: admin.get_user_permission(user, "registered_model", model).permission
            for role, user in auth.MLFLOW_USERS.items()
        }
        aliases = tracking.client(settings=secure_stack).get_registered_model(model).aliases
    assert effective == {"TRAIN": "MANAGE", "PROMOTE": "MANAGE", "READER": "READ"}, effective
    assert "champion" in aliases
