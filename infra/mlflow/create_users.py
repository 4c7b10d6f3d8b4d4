"""Create (or update) the MLflow users of the pipeline; run by the `mlflow-init` service, and by
the local stack in secure mode (`ml/dev/stack/auth.py` loads this file: one implementation).

Runs as the MLflow admin (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD) against
MLFLOW_TRACKING_URI. For each pair of MLFLOW_<ROLE>_USERNAME / MLFLOW_<ROLE>_PASSWORD below, the
user is created, or its password is reset to the configured one (how a password is rotated):

- TRAIN: the train stage's tasks (Airflow connection `mlpipe_mlflow_train`). Creates
  experiments, runs, logged models, registered models and versions; as their creator it manages
  them. The only identity that registers models.
- PROMOTE: the promote stage's tasks (`mlpipe_mlflow_promote`). Moves aliases and tags versions:
  the role `mlpipe-promote` gives it MANAGE on every registered model (deleting an alias needs
  MANAGE in MLflow's permission model, which also allows creating a version; it creates no run).
- READER: every other task and the Dask workers. Loads models (`models:/NAME@champion`) and
  reads runs; the server's default permission (READ) is all it has.

Without workspaces (MLflow's default) any authenticated user may create a *new* experiment or
registered model of its own; what it cannot do is write into the ones the train user created.
"""

from __future__ import annotations

import os
import sys
import time

from mlflow.exceptions import MlflowException, RestException
from mlflow.server.auth.client import AuthServiceClient

ROLES = ("TRAIN", "PROMOTE", "READER")
PROMOTE_ROLE = "mlpipe-promote"
# What the promote role may do: (resource type, pattern, permission) for `add_role_permission`.
PROMOTE_GRANTS = (("registered_model", "*", "MANAGE"),)
WORKSPACE = "default"  # MLflow's default workspace: roles live in one even without workspaces


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


def ensure_promote_role(client: AuthServiceClient, username: str) -> str:
    """The role `mlpipe-promote` with exactly `PROMOTE_GRANTS`, assigned to `username`."""
    role = next((r for r in client.list_roles(WORKSPACE) if r.name == PROMOTE_ROLE), None)
    if role is None:
        role = client.create_role(WORKSPACE, PROMOTE_ROLE, "moves aliases of registered models")
    have = {
        (p.resource_type, p.resource_pattern, p.permission): p
        for p in client.list_role_permissions(role.id)
    }
    for grant in PROMOTE_GRANTS:
        if grant not in have:
            client.add_role_permission(role.id, *grant)
    for grant, permission in have.items():
        if grant not in PROMOTE_GRANTS:  # a right added by hand: the role stays what it says
            client.remove_role_permission(permission.id)
    if all(r.id != role.id for r in client.list_user_roles(username)):
        client.assign_role(username, role.id)
    return f"role {PROMOTE_ROLE}"


def provision(client: AuthServiceClient, users: dict[str, tuple[str, str]]) -> list[str]:
    """Users by role (`ROLES`: (username, password)), the promote role; what was done."""
    done = []
    for role, (username, password) in users.items():
        done.append(f"user {username}: {ensure_user(client, username, password)}")
        if role == "PROMOTE":
            done.append(f"user {username}: {ensure_promote_role(client, username)}")
    return done


def main() -> int:
    client = AuthServiceClient(os.environ["MLFLOW_TRACKING_URI"])
    wait_for_server(client, os.environ["MLFLOW_TRACKING_USERNAME"])
    users = {}
    for role in ROLES:
        username = os.environ.get(f"MLFLOW_{role}_USERNAME", "")
        password = os.environ.get(f"MLFLOW_{role}_PASSWORD", "")
        if not username or not password:
            print(f"[mlflow-init] MLFLOW_{role}_USERNAME/PASSWORD not set: skipped", flush=True)
            continue
        users[role] = (username, password)
    for line in provision(client, users):
        print(f"[mlflow-init] {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
