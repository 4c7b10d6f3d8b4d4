#!/usr/bin/env bash
# Set up the settings and secrets of the compose stack:
#   - infra/compose.env (settings, no secrets) from infra/compose.env.example;
#   - infra/secrets/<name>, one file per secret (Docker secrets of docker-compose.yml), fresh
#     random values; the connection URLs that embed a password are written as secrets too.
#
#   bash infra/make-compose-env.sh [--force] [--check] [OUTPUT_DIR]
#       OUTPUT_DIR   where compose.env and secrets/ go (default: infra/; docker-compose.yml reads
#                    MLPIPE_SECRETS_DIR, default ./infra/secrets)
#       --force      overwrite existing files (NEW secrets: see below)
#       --check      write nothing; fail unless every secret exists and is no placeholder
#                    (`change-me`, or shorter than 16 characters)
#
# Refuses to overwrite without --force: new secrets would no longer match the ones already
# stored in the volumes (Postgres roles, MinIO users, MLflow admin, Fernet-encrypted connections).
# The secret files are mode 0644 inside a 0700 folder: Compose (outside Swarm) bind-mounts each
# file as it is, and the services read them under their own users.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mode=write
force=false
while [[ ${1:-} == --* ]]; do
    case $1 in
        --force) force=true ;;
        --check) mode=check ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
out=${1:-$here}

python3 - "$here/compose.env.example" "$out" "$mode" "$force" <<'PY'
import base64
import os
import secrets
import sys
from pathlib import Path

example, out, mode, force = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "true"
MIN_LENGTH = 16  # ml/settings.py SECRET_MIN_LENGTH, infra/entrypoint.sh
# Random secrets (URL-safe: some end up inside URLs), by file name under secrets/.
RANDOM = [
    "minio_root_password",
    "minio_airflow_secret_key", "minio_dask_secret_key", "minio_mlflow_secret_key",
    "minio_ingest_secret_key", "minio_validate_secret_key", "minio_preprocess_secret_key",
    "minio_train_secret_key", "minio_promote_secret_key", "minio_score_secret_key",
    "postgres_password", "airflow_db_password", "mlflow_db_password", "redis_password",
    "mlflow_admin_password", "mlflow_flask_secret_key",
    "mlflow_train_password", "mlflow_promote_password", "mlflow_reader_password",
    "airflow_admin_password", "airflow_operator_password", "airflow_viewer_password",
    "airflow_api_secret_key", "airflow_jwt_secret", "pii_salt",
]
# Connection strings that embed a password (read whole by Airflow's `_CMD` options, MLflow).
DERIVED = {
    "airflow_db_url": "postgresql+psycopg2://airflow:{airflow_db_password}@postgres:5432/airflow",
    "airflow_celery_result_backend":
        "db+postgresql://airflow:{airflow_db_password}@postgres:5432/airflow",
    "airflow_celery_broker_url": "redis://:{redis_password}@redis:6379/0",
    "mlflow_backend_store_uri": "postgresql://mlflow:{mlflow_db_password}@postgres:5432/mlflow",
}
ALL = [*RANDOM, "airflow_fernet_key", *DERIVED]
folder = out / "secrets"


def problem(value: str) -> str | None:
    folded = value.lower().replace("_", "-")
    if "change-me" in folded or "changeme" in folded:
        return "holds a placeholder ('change-me')"
    if len(value) < MIN_LENGTH:
        return f"is {len(value)} characters long, shorter than the minimum {MIN_LENGTH}"
    return None


if mode == "check":
    bad = []
    for name in ALL:
        path = folder / name
        if not path.exists():
            bad.append(f"{path} is missing")
        elif why := problem(path.read_text()):
            bad.append(f"{path} {why}")
    if bad:
        sys.exit("refusing placeholder or missing secrets:\n  - " + "\n  - ".join(bad))
    print(f"{len(ALL)} secrets in {folder}: present, no placeholders")
    sys.exit(0)

env_file = out / "compose.env"
if not force and (env_file.exists() or folder.exists()):
    sys.exit(f"{env_file} or {folder} exists; pass --force to overwrite (see this script's head)")
out.mkdir(parents=True, exist_ok=True)
env_file.write_text(Path(example).read_text())
folder.mkdir(mode=0o700, exist_ok=True)
folder.chmod(0o700)
values = {name: secrets.token_hex(24) for name in RANDOM}
values["airflow_fernet_key"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
values.update({name: url.format(**values) for name, url in DERIVED.items()})
for name, value in values.items():
    path = folder / name
    path.write_text(value)  # no newline: read as it is by every consumer
    path.chmod(0o644)
print(f"wrote {env_file} and {len(values)} secrets in {folder}; keep them out of git")
PY
