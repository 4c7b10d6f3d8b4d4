"""Create (or update) the MLflow users of the pipeline; run by the `mlflow-init` service.

Runs as the MLflow admin (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD) against
MLFLOW_TRACKING_URI. For each pair of MLFLOW_<ROLE>_USERNAME / MLFLOW_<ROLE>_PASSWORD below, the
user is created, or its password is reset to the configured one (how a password is rotated):

- PIPELINE: the Airflow workers. Creates experiments, runs, logged models, registered models and
  versions, and moves aliases; as their creator it manages them.
- READER: the Dask workers. Loads models (`models:/NAME@champion`) and reads runs; the server's
  default permission (READ) is all it has.
"""

from __future__ import annotations

import os
import sys
import time

from mlflow.exceptions import MlflowException, RestException
from mlflow.server.auth.client import AuthServiceClient

ROLES = ("PIPELINE", "READER")


def wait_for_server(client: AuthServiceClient, admin: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.get_user(admin)
            return
        except MlflowException as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"[mlflow-init] MLflow server not ready: {exc}") from exc
            time.sleep(2)


def ensure_user(client: AuthServiceClient, username: str, password: str) -> str:
    try:
        client.get_user(username)
    except RestException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_user(username, password)
        return "created"
    client.update_user_password(username, password)
    return "password updated"


def main() -> int:
    client = AuthServiceClient(os.environ["MLFLOW_TRACKING_URI"])
    wait_for_server(client, os.environ["MLFLOW_TRACKING_USERNAME"])
    for role in ROLES:
        username = os.environ.get(f"MLFLOW_{role}_USERNAME", "")
        password = os.environ.get(f"MLFLOW_{role}_PASSWORD", "")
        if not username or not password:
            print(f"[mlflow-init] MLFLOW_{role}_USERNAME/PASSWORD not set: skipped", flush=True)
            continue
        print(
            f"[mlflow-init] user {username}: {ensure_user(client, username, password)}", flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
