#!/usr/bin/env bash
# First start of Postgres (sourced by the postgres image's entrypoint from
# /docker-entrypoint-initdb.d, as the superuser, on an empty data directory only): runs
# init.sql with the `airflow` and `mlflow` role passwords read from their Docker secrets
# (/run/secrets/airflow_db_password, /run/secrets/mlflow_db_password). A missing, placeholder
# or short password stops the initialisation.
set -euo pipefail

for name in airflow_db_password mlflow_db_password; do
    path=/run/secrets/$name
    [[ -r $path ]] || { echo "init.sh: $path missing (Docker secret $name)" >&2; exit 1; }
    value=$(<"$path")
    if [[ ${value,,} == *change-me* || ${value,,} == *changeme* || ${#value} -lt 16 ]]; then
        echo "init.sh: $name is a placeholder or shorter than 16 characters" >&2
        exit 1
    fi
done

AIRFLOW_DB_PASSWORD=$(</run/secrets/airflow_db_password) \
MLFLOW_DB_PASSWORD=$(</run/secrets/mlflow_db_password) \
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        -f /opt/mlpipe/init.sql
