"""The S3 side of the local stack's `secure` mode (`MLPIPE_SECURE=true`): the S3 server enforces
IAM, with the users and policies compose makes in MinIO (`infra/minio/policies`, via
`ml.dev.stack.iam`), and every process gets its own keys: the Airflow processes the read-only
`airflow` identity plus one connection per stage (`AIRFLOW_CONN_MLPIPE_S3_<STAGE>`, read by
`dags/_mlpipe.py`), the Dask workers the `dask` identity, the MLflow server the `mlflow` one.

The keys are made when the S3 server starts (moto makes them, and keeps them in memory only) and
kept, mode 0600, in `<state>/s3/identities.json` for the services started after it. The admin's
key is kept there too: the stack creates its buckets with it, nothing else uses it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ml.dev.stack import iam
from ml.identity import S3Identity, use_identity
from ml.settings import Settings

log = logging.getLogger(__name__)

ADMIN = "admin"

# MLflow clients would fetch large artifacts straight from S3 with URLs the server presigns;
# moto's server enforcing IAM fails on presigned URLs (HTTP 500), so clients go through the
# server (which holds the `mlflow` keys) instead.
PROXIED_DOWNLOADS = {"MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false"}


def identities_file(settings: Settings) -> Path:
    return settings.state_path / "s3" / "identities.json"


def secure_s3_server_env(settings: Settings) -> dict[str, str]:
    """Extra environment of the local S3 server: IAM enforced in secure mode."""
    return iam.moto_iam_env() if settings.secure and settings.starts_local_s3 else {}


def provision_secure_s3(settings: Settings) -> dict[str, S3Identity]:
    """On the freshly started S3 server: the admin, one user per policy file, the buckets (made
    by the admin); the keys kept for the services. Returns the identities by name."""
    from ml import storage  # deferred: the stack imports this module before storage is needed

    admin = iam.bootstrap_admin(settings)
    identities = iam.create_s3_identities(admin, settings=settings)
    path = identities_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(
            {name: _as_dict(i) for name, i in {ADMIN: admin, **identities}.items()}, fh, indent=2
        )
    with use_identity(admin):
        storage.ensure_buckets(settings)
    log.info("secure S3: users %s, each with its own policy", ", ".join(sorted(identities)))
    return identities


def _as_dict(identity: S3Identity) -> dict[str, str]:
    return {
        "access_key_id": identity.access_key_id,
        "secret_access_key": identity.secret_access_key,
    }


def kept_identities(settings: Settings) -> dict[str, S3Identity]:
    """The identities `provision_secure_s3` kept (empty when there are none)."""
    path = identities_file(settings)
    if not path.exists():
        return {}
    return {name: S3Identity(name, **keys) for name, keys in json.loads(path.read_text()).items()}


def admin_identity(settings: Settings) -> S3Identity | None:
    """The admin's identity in secure mode (bucket administration), else None."""
    return kept_identities(settings).get(ADMIN) if settings.secure else None


def _keys_env(identity: S3Identity | None) -> dict[str, str]:
    if identity is None:
        return {}
    return {
        "AWS_ACCESS_KEY_ID": identity.access_key_id,
        "AWS_SECRET_ACCESS_KEY": identity.secret_access_key,
    }


def secure_s3_service_env(settings: Settings, service: str) -> dict[str, str]:
    """Extra environment of a service in secure mode (empty otherwise): its own S3 keys, and
    for Airflow the per-stage connections."""
    if not settings.secure:
        return {}
    ids = kept_identities(settings)
    if service == "mlflow":
        return _keys_env(ids.get("mlflow"))
    if service == "dask-workers":
        return {**_keys_env(ids.get("dask")), **PROXIED_DOWNLOADS}
    if service == "airflow":
        stages = {k: v for k, v in ids.items() if k not in (ADMIN, "airflow", "mlflow")}
        conns = iam.connection_env(stages, settings)
        return {**_keys_env(ids.get("airflow")), **conns, **PROXIED_DOWNLOADS}
    return {}
