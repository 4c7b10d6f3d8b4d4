#!/usr/bin/env bash
# One-shot set-up of the Airflow metadata database, run by the `airflow-init` service before any
# other Airflow component starts. Safe to run again (every step is idempotent).
#
# Reads (from docker-compose.yml / infra/compose.env):
#   AIRFLOW__DATABASE__SQL_ALCHEMY_CONN                  the metadata DB (Postgres)
#   AIRFLOW_GPU_POOL_SLOTS                               slots of the `gpu` pool (default 1)
#   AIRFLOW_ADMIN_USERNAME, AIRFLOW_ADMIN_PASSWORD       the UI/API admin of SimpleAuthManager
#   AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE    where that password is written
set -euo pipefail

log() { printf '[airflow-init] %s\n' "$*"; }

: "${AIRFLOW_ADMIN_USERNAME:?}" "${AIRFLOW_ADMIN_PASSWORD:?}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?}"

log "airflow $(airflow version)"

log "migrating the metadata database"
airflow db migrate

# Training tasks run in the `gpu` pool: one slot per GPU the gpu worker has, so two trainings
# never share a device. Tasks without a GPU to go to still run there (CPU fallback).
log "pools"
airflow pools set gpu "${AIRFLOW_GPU_POOL_SLOTS:-1}" "Training tasks (one slot per GPU of the gpu worker)"
# Promotions move model aliases: one at a time, so two never read the same champion.
airflow pools set promotion 1 "Alias moves, one at a time"

# SimpleAuthManager keeps its users' passwords in a JSON file; write ours so the admin password
# is the one from compose.env instead of a generated one printed into the api-server log.
log "admin user '${AIRFLOW_ADMIN_USERNAME}' for the UI and the REST API"
python - <<'PY'
import json
import os
import pathlib

path = pathlib.Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
path.parent.mkdir(parents=True, exist_ok=True)
tmp = path.with_name(path.name + ".tmp")
tmp.write_text(json.dumps({os.environ["AIRFLOW_ADMIN_USERNAME"]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}) + "\n")
tmp.chmod(0o600)
tmp.replace(path)
PY

log "done"
