#!/usr/bin/env bash
# Entrypoint of the compose services that run our code or our scripts (project image, MLflow
# image, minio-init): secrets from files, placeholders refused, then the command.
#
#   entrypoint.sh COMMAND [ARGS...]
#
# 1. MLPIPE_SECRET_ENV="NAME=secret NAME2=secret2 ...": each NAME is set to the content of
#    /run/secrets/<secret> (MLPIPE_SECRETS_PATH), how Docker secrets reach programs that read
#    an environment variable (AWS_SECRET_ACCESS_KEY, MLFLOW_TRACKING_PASSWORD, ...).
# 2. Every secret this container was given (every file under /run/secrets, those above and the
#    ones Airflow reads through its `_CMD` options) is checked: a value that is or contains a
#    placeholder (`change-me`, `changeme`) or is shorter than MLPIPE_SECRET_MIN_LENGTH (default
#    16, as ml/settings.py SECRET_MIN_LENGTH) stops the container with a message naming it.
# 3. Where the `ml` package is installed, `Settings.check_secrets()` runs on the result.
#
# Only bash builtins: the minio/mc image has no grep, sed or python.
set -euo pipefail

min_length=${MLPIPE_SECRET_MIN_LENGTH:-16}
problems=()

check_secret() {  # check_secret WHAT VALUE
    local what=$1 value=$2 folded
    folded=${2,,}
    folded=${folded//_/-}
    if [[ $folded == *change-me* || $folded == *changeme* ]]; then
        problems+=("$what holds a placeholder ('change-me')")
    elif ((${#value} < min_length)); then
        problems+=("$what is ${#value} characters long, shorter than the minimum $min_length")
    fi
}

secrets_path=${MLPIPE_SECRETS_PATH:-/run/secrets}
for pair in ${MLPIPE_SECRET_ENV:-}; do
    var=${pair%%=*}
    path=$secrets_path/${pair#*=}
    if [[ $pair != *=* || ! -r $path ]]; then
        printf 'entrypoint: %s: %s is not a readable file (is the Docker secret defined?)\n' \
            "$pair" "$path" >&2
        exit 64
    fi
    export "$var=$(<"$path")"
done
unset MLPIPE_SECRET_ENV

# MLPIPE_SECRET_CONN="AIRFLOW_CONN_<ID>=login:secret ...": an Airflow connection (JSON) whose password is the content of /run/secrets/<secret>: the per-stage S3
# identities (type aws; dags/_mlpipe.py reads `mlpipe_s3_<stage>`) and MLflow users (type http,
# `mlpipe_mlflow_<stage>`).
for entry in ${MLPIPE_SECRET_CONN:-}; do
    conn=${entry%%=*}
    spec=${entry#*=}
    path=$secrets_path/${spec##*:}
    if [[ $entry != *=*:* || ! -r $path ]]; then
        printf 'entrypoint: %s: %s is not a readable file (is the Docker secret defined?)\n' \
            "$entry" "$path" >&2
        exit 64
    fi
    secret=$(<"$path")
    type=aws
    [[ $conn == AIRFLOW_CONN_MLPIPE_MLFLOW_* ]] && type=http
    export "${conn}={\"conn_type\": \"${type}\", \"login\": \"${spec%:*}\", \"password\": \"${secret}\"}"
done
unset MLPIPE_SECRET_CONN

if [[ -d $secrets_path ]]; then
    for path in "$secrets_path"/*; do
        [[ -f $path && -r $path ]] || continue
        check_secret "secret ${path##*/}" "$(<"$path")"
    done
fi

if ((${#problems[@]})); then
    printf 'entrypoint: refusing to start %s:\n' "${1:-the container}" >&2
    printf '  - %s\n' "${problems[@]}" >&2
    printf 'Write real secrets: bash infra/make-compose-env.sh (see infra/README.md).\n' >&2
    exit 65
fi

if command -v python >/dev/null 2>&1 && python -c 'import ml.settings' 2>/dev/null; then
    python -c 'from ml.settings import get_settings; get_settings().check_secrets()' || exit 65
fi

exec "$@"
