"""Authentication of the local stack in `secure` mode (`MLPIPE_SECURE=true`).

Off (the default): Airflow's SimpleAuthManager makes everyone an admin (`GET /auth/token` issues
a token) and MLflow asks for nothing. On:

- Airflow's SimpleAuthManager with real users: `admin` (or `MLPIPE_AIRFLOW_USERNAME`), `operator`
  (role op) and `viewer` (role viewer). Their passwords live in the state folder
  (`airflow/passwords.json`, mode 0600, generated once); the admin's is `MLPIPE_AIRFLOW_PASSWORD`
  when set. A client gets a JWT with `POST /auth/token {"username", "password"}`.
- MLflow's basic-auth app (`mlflow server --app-name basic-auth`): users and permissions in
  `mlflow/basic_auth.db`, the admin `MLPIPE_MLFLOW_ADMIN_USERNAME` with the password
  `MLPIPE_MLFLOW_ADMIN_PASSWORD` (generated and kept in the state folder when not set), and the
  pipeline's users as compose has them (`MLFLOW_USERS`, made by the same
  `infra/mlflow/create_users.py`): the stack's own processes (Airflow, Dask workers) act as the
  reader, and the train and promote tasks as their own users through the Airflow connections
  `mlpipe_mlflow_<stage>` (dags/_mlpipe.py). Settings that carry their own
  `MLFLOW_TRACKING_USERNAME` / `_PASSWORD` (an MLflow of the team's) are used as they are.

`client_env()` is what a process outside the stack (the CLI, a test) needs to talk to it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
from functools import cache
from pathlib import Path

from ml.dev.airflow_api import AirflowClient
from ml.settings import Settings
from ml.tracking import WRITER_STAGES, credentials_env, environ

REPO = Path(__file__).resolve().parents[3]
#: The pipeline's MLflow users in secure mode, by role of infra/mlflow/create_users.py.
MLFLOW_USERS = {"TRAIN": "mlpipe-train", "PROMOTE": "mlpipe-promote", "READER": "mlpipe-reader"}

SIMPLE_AUTH_MANAGER = (
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
)
#: Users of the secure local Airflow besides the admin, and their SimpleAuthManager roles.
AIRFLOW_OTHER_USERS = {"operator": "op", "viewer": "viewer"}


def airflow_admin(settings: Settings) -> str:
    return settings.airflow_username or "admin"


def _auth_dir(settings: Settings, service: str) -> Path:
    """`<state>/airflow` (the Airflow home, as in `services.airflow_home`) or `<state>/mlflow`."""
    return settings.state_path / service


def _keep_json(path: Path, wanted: dict[str, str], fixed: dict[str, str]) -> dict[str, str]:
    """The JSON object of `path` (mode 0600): kept values, missing keys from `wanted`, and the
    `fixed` ones (given by the settings) always as given."""
    current = json.loads(path.read_text()) if path.exists() else {}
    values = {**wanted, **current, **fixed}
    if values != current:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(values, fh)
        tmp.replace(path)
    return values


def airflow_passwords_file(settings: Settings) -> Path:
    return _auth_dir(settings, "airflow") / "passwords.json"


def airflow_passwords(settings: Settings) -> dict[str, str]:
    """User -> password of the secure local Airflow (created on first use)."""
    admin = airflow_admin(settings)
    users = [admin, *AIRFLOW_OTHER_USERS]
    generated = {user: secrets.token_urlsafe(24) for user in users}
    fixed = {}
    if settings.airflow_password is not None:
        fixed[admin] = settings.airflow_password.get_secret_value()
    return _keep_json(airflow_passwords_file(settings), generated, fixed)


def airflow_auth_env(settings: Settings) -> dict[str, str]:
    """The auth manager settings of every Airflow process of the local stack."""
    env = {"AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER}
    if not settings.secure:
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "True"
        return env
    airflow_passwords(settings)  # the file exists before the api-server reads it
    roles = {airflow_admin(settings): "admin", **AIRFLOW_OTHER_USERS}
    env.update(
        {
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                f"{user}:{role}" for user, role in roles.items()
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                airflow_passwords_file(settings)
            ),
            **mlflow_process_env(settings),
            **mlflow_connection_env(settings),
        }
    )
    return env


def airflow_client(settings: Settings) -> AirflowClient:
    """A REST client of the stack's Airflow: the settings' user, else in secure mode the local
    admin, else none (all-admins)."""
    if settings.airflow_username or not settings.secure:
        return AirflowClient.from_settings(settings)
    admin = airflow_admin(settings)
    return AirflowClient(settings.airflow_api_url, admin, airflow_passwords(settings)[admin])


# --------------------------------------------------------------------------------------------
# MLflow


def _mlflow_keys(settings: Settings) -> dict[str, str]:
    fixed = {}
    if settings.mlflow_admin_password is not None:
        fixed["admin_password"] = settings.mlflow_admin_password.get_secret_value()
    wanted = {
        "admin_password": secrets.token_urlsafe(24),
        "flask_secret_key": secrets.token_urlsafe(48),
        **{f"{role.lower()}_password": secrets.token_urlsafe(24) for role in MLFLOW_USERS},
    }
    return _keep_json(_auth_dir(settings, "mlflow") / "auth-secrets.json", wanted, fixed)


def mlflow_server_args(settings: Settings) -> list[str]:
    """Extra `mlflow server` arguments: the basic-auth app in secure mode."""
    return ["--app-name", "basic-auth"] if settings.secure else []


def mlflow_server_env(settings: Settings) -> dict[str, str]:
    """The MLflow server's auth configuration (empty unless secure): an ini file in the state
    folder, the admin from the settings, a kept Flask secret."""
    if not settings.secure:
        return {}
    folder = _auth_dir(settings, "mlflow")
    folder.mkdir(parents=True, exist_ok=True)
    ini = folder / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{folder / 'basic_auth.db'}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
    )
    keys = _mlflow_keys(settings)
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_USERNAME": settings.mlflow_admin_username,
        "MLFLOW_AUTH_ADMIN_PASSWORD": keys["admin_password"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": keys["flask_secret_key"],
    }


def _own_mlflow_credentials(settings: Settings) -> dict[str, str]:
    if settings.mlflow_tracking_password is None:
        return {}
    return credentials_env(
        settings.mlflow_tracking_username, settings.mlflow_tracking_password.get_secret_value()
    )


def mlflow_client_env(settings: Settings) -> dict[str, str]:
    """MLflow credentials of a client outside the pipeline (the CLI, the stack's own set-up):
    the settings' own, else in secure mode the local admin's, else none."""
    own = _own_mlflow_credentials(settings)
    if own or not settings.secure:
        return own
    return credentials_env(settings.mlflow_admin_username, _mlflow_keys(settings)["admin_password"])


def mlflow_user(settings: Settings, role: str) -> tuple[str, str]:
    """(username, password) of the pipeline's MLflow user `role` (`MLFLOW_USERS`)."""
    return MLFLOW_USERS[role], _mlflow_keys(settings)[f"{role.lower()}_password"]


def mlflow_process_env(settings: Settings) -> dict[str, str]:
    """MLflow credentials of the stack's processes (Airflow, Dask workers): the settings' own,
    else in secure mode the reader's, else none."""
    own = _own_mlflow_credentials(settings)
    if own or not settings.secure:
        return own
    return credentials_env(*mlflow_user(settings, "READER"))


def mlflow_connection_env(settings: Settings) -> dict[str, str]:
    """`AIRFLOW_CONN_MLPIPE_MLFLOW_<STAGE>` for the stages that write to MLflow (secure mode,
    unless the settings carry their own credentials: then every stage uses those)."""
    if not settings.secure or _own_mlflow_credentials(settings):
        return {}
    env = {}
    for stage in WRITER_STAGES:
        username, password = mlflow_user(settings, stage.upper())
        conn = {"conn_type": "http", "host": settings.mlflow_tracking_uri}
        env[f"AIRFLOW_CONN_MLPIPE_MLFLOW_{stage.upper()}"] = json.dumps(
            {**conn, "login": username, "password": password}
        )
    return env


@cache
def _create_users_module():
    """infra/mlflow/create_users.py, what compose's `mlflow-init` runs."""
    path = REPO / "infra" / "mlflow" / "create_users.py"
    spec = importlib.util.spec_from_file_location("mlpipe_mlflow_create_users", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def provision_mlflow_users(settings: Settings) -> list[str]:
    """The pipeline's MLflow users and the promote role (secure mode, own credentials not
    given), made by the admin as compose's `mlflow-init` makes them; what was done."""
    if not settings.secure or _own_mlflow_credentials(settings):
        return []
    users = {role: mlflow_user(settings, role) for role in MLFLOW_USERS}
    create_users = _create_users_module()
    with environ(mlflow_client_env(settings)):
        client = create_users.AuthServiceClient(settings.mlflow_tracking_uri)
        return create_users.provision(client, users)


def client_env(settings: Settings) -> dict[str, str]:
    """What a process outside the stack (CLI, tests) sets to reach a secure stack."""
    env = mlflow_client_env(settings)
    if settings.secure:
        admin = airflow_admin(settings)
        env["MLPIPE_AIRFLOW_USERNAME"] = admin
        env["MLPIPE_AIRFLOW_PASSWORD"] = airflow_passwords(settings)[admin]
    return env
