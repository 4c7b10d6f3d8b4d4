#!/usr/bin/env bash
# One-shot set-up of the Airflow metadata database, run by the `airflow-init` service before any
# other Airflow component starts. Safe to run again (every step is idempotent).
#
# Reads (from docker-compose.yml; secrets from /run/secrets):
#   AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD           the metadata DB (Postgres)
#   AIRFLOW_GPU_POOL_SLOTS                            slots of the `gpu` pool (default 1)
#   AIRFLOW_{ADMIN,OPERATOR,VIEWER}_USERNAME          the FAB users, roles Admin, Op, Viewer;
#   /run/secrets/airflow_{admin,operator,viewer}_password   their passwords (set again on every
#                                                     run: that is how a password is rotated)
set -euo pipefail

log() { printf '[airflow-init] %s\n' "$*"; }

log "airflow $(airflow version)"

log "migrating the metadata database (Airflow, then the FAB auth manager's tables)"
airflow db migrate
airflow fab-db migrate

# Training tasks run in the `gpu` pool: one slot per GPU the gpu worker has, so two trainings
# never share a device. Tasks without a GPU to go to still run there (CPU fallback).
log "pools"
airflow pools set gpu "${AIRFLOW_GPU_POOL_SLOTS:-1}" "Training tasks (one slot per GPU of the gpu worker)"
# Promotions move model aliases: one at a time, so two never read the same champion.
airflow pools set promotion 1 "Alias moves, one at a time"

# FAB users: Admin (everything), Op (runs DAGs, manages pools and connections: the CLI's
# `mlpipe model rollback` raises its asset event as this user), Viewer (reads only).
ensure_user() {  # ensure_user USERNAME ROLE SECRET
    local user=$1 role=$2 secret=${MLPIPE_SECRETS_PATH:-/run/secrets}/$3 password out
    [[ -r $secret ]] || { log "ERROR: $secret missing"; exit 1; }
    password=$(<"$secret")
    out=$(mktemp)
    # `users create` on an existing user prints "already exist" and exits 0: look at the output.
    if ! airflow users create --username "$user" --role "$role" --password "$password" \
        --firstname "$user" --lastname mlpipe --email "$user@mlpipe.invalid" >"$out" 2>&1; then
        cat "$out" >&2
        exit 1
    fi
    if grep -q "already exist" "$out"; then
        airflow users reset-password --username "$user" --password "$password" >/dev/null
        # (add-role fails when the user has the role already: nothing to do then)
        airflow users add-role --username "$user" --role "$role" >/dev/null 2>&1 || true
        log "user '$user' kept (role $role), password set from its secret"
    else
        log "user '$user' created (role $role)"
    fi
    rm -f "$out"
}
ensure_user "${AIRFLOW_ADMIN_USERNAME:-admin}" Admin airflow_admin_password
ensure_user "${AIRFLOW_OPERATOR_USERNAME:-operator}" Op airflow_operator_password
ensure_user "${AIRFLOW_VIEWER_USERNAME:-viewer}" Viewer airflow_viewer_password

log "done"
