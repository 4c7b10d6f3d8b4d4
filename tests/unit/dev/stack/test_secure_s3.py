"""The S3 side of the local stack's secure mode: which keys each service gets (nothing started)."""

from __future__ import annotations

import json

import pytest

from ml.dev.stack import iam, secure_s3
from ml.dev.stack.services import airflow_env, service_spec

pytestmark = pytest.mark.unit


def _keep(settings, names):
    path = secure_s3.identities_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = {n: {"access_key_id": f"AK{n}", "secret_access_key": f"{n}-secret"} for n in names}
    path.write_text(json.dumps(keys))


def test_off_by_default_nothing_changes(settings):
    _keep(settings, ["admin", "dask", "mlflow", "ingest"])
    assert not settings.secure
    assert service_spec(settings, "s3").env == {}
    assert "AWS_ACCESS_KEY_ID" not in service_spec(settings, "dask-workers").env
    assert airflow_env(settings)["AWS_ACCESS_KEY_ID"] == "unit"
    assert not any(k.startswith("AIRFLOW_CONN_MLPIPE_S3") for k in airflow_env(settings))


def test_secure_mode_gives_every_process_its_own_keys(settings):
    settings = settings.model_copy(update={"secure": True})
    _keep(settings, ["admin", "airflow", "dask", "mlflow", "ingest", "promote"])
    assert service_spec(settings, "s3").env == iam.moto_iam_env()
    assert service_spec(settings, "dask-workers").env["AWS_ACCESS_KEY_ID"] == "AKdask"
    assert service_spec(settings, "mlflow").env["AWS_SECRET_ACCESS_KEY"] == "mlflow-secret"
    env = airflow_env(settings)
    assert env["AWS_ACCESS_KEY_ID"] == "AKairflow"  # the read-only identity by default
    conn = json.loads(env["AIRFLOW_CONN_MLPIPE_S3_INGEST"])
    assert conn["login"] == "AKingest" and conn["password"] == "ingest-secret"
    assert conn["extra"]["endpoint_url"] == settings.s3_endpoint_url
    assert "AIRFLOW_CONN_MLPIPE_S3_PROMOTE" in env
    assert not {"AIRFLOW_CONN_MLPIPE_S3_ADMIN", "AIRFLOW_CONN_MLPIPE_S3_MLFLOW"} & set(env)
    assert secure_s3.admin_identity(settings).access_key_id == "AKadmin"


def test_the_policies_name_the_configured_buckets(settings):
    renamed = settings.model_copy(update={"bucket_raw": "lake-raw"})
    docs = iam.policy_documents(settings=renamed)
    text = json.dumps(docs["ingest"])
    assert "arn:aws:s3:::lake-raw/*" in text and "arn:aws:s3:::raw" not in text
    assert set(docs) >= {"ingest", "validate", "preprocess", "train", "promote", "score", "dask"}
