#!/usr/bin/env bash
# Bootstrap MinIO for the pipeline: one versioned bucket per storage zone, one least-privilege
# policy per service (policies/<service>.json) and one user per service with that policy.
#
# Run by the `minio-init` service (image minio/mc) after MinIO is healthy; safe to run again at
# any time: buckets and versioning are kept, policies are overwritten with the files' content,
# user secrets are reset to the values in the environment (that is how a secret is rotated).
#
# Environment:
#   MINIO_ENDPOINT                 S3 API of MinIO (default http://minio:9000)
#   MINIO_ROOT_USER, MINIO_ROOT_PASSWORD
#                                  the admin credentials (used here only, never by a service)
#   MLPIPE_BUCKET_<ZONE>           bucket of each zone (default: the zone's name); the policy
#                                  files name the default buckets and are rewritten to these
#   MINIO_<SERVICE>_SECRET_KEY     secret key of the user <service> (its access key is the
#                                  service name). A user whose secret is unset is skipped, except
#                                  the ones in MINIO_REQUIRED_USERS, whose absence is an error.
#   MINIO_REQUIRED_USERS           default "airflow dask mlflow" (compose requires every user:
#                                  the read-only `airflow`, the services and one per stage)
#   POLICY_DIR                     default: policies/ beside this script
#
# Only bash builtins, coreutils and `mc` are used: the minio/mc image has no sed, grep or jq.
set -euo pipefail

ENDPOINT=${MINIO_ENDPOINT:-http://minio:9000}
POLICY_DIR=${POLICY_DIR:-$(dirname "$0")/policies}
REQUIRED_USERS=${MINIO_REQUIRED_USERS:-airflow dask mlflow}
ALIAS=mlpipe
ZONES=(raw validated quarantine features predictions reports mlflow)

log() { printf '[minio-bootstrap] %s\n' "$*"; }
die() { printf '[minio-bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is required}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is required}"
[[ -d $POLICY_DIR ]] || die "policy folder $POLICY_DIR not found"

# The bucket name of a zone: MLPIPE_BUCKET_<ZONE> or the zone's own name.
bucket_of() {
    local var="MLPIPE_BUCKET_${1^^}"
    printf '%s' "${!var:-$1}"
}

# 1. Wait for MinIO (the compose health check usually makes this instant).
for ((attempt = 1; ; attempt++)); do
    if mc alias set "$ALIAS" "$ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1 \
        && mc admin info "$ALIAS" >/dev/null 2>&1; then
        break
    fi
    ((attempt < 60)) || die "MinIO at $ENDPOINT did not answer in 120 s"
    sleep 2
done
log "connected to $ENDPOINT"

# 2. Buckets, versioned: a retry or a mistake never destroys an earlier object version.
for zone in "${ZONES[@]}"; do
    bucket=$(bucket_of "$zone")
    mc mb --ignore-existing "$ALIAS/$bucket" >/dev/null
    mc version enable "$ALIAS/$bucket" >/dev/null
    log "bucket $bucket (zone $zone): versioning enabled"
done

# 3. Policies, with the default bucket names replaced by the configured ones.
tmp_dir=$(mktemp -d)
trap 'rm -rf "$tmp_dir"' EXIT
shopt -s nullglob
policy_files=("$POLICY_DIR"/*.json)
((${#policy_files[@]} > 0)) || die "no policy files in $POLICY_DIR"
for file in "${policy_files[@]}"; do
    name=$(basename "$file" .json)
    doc=$(<"$file")
    for zone in "${ZONES[@]}"; do
        bucket=$(bucket_of "$zone")
        [[ $bucket == "$zone" ]] && continue
        doc=${doc//"arn:aws:s3:::${zone}\""/"arn:aws:s3:::${bucket}\""}
        doc=${doc//"arn:aws:s3:::${zone}/"/"arn:aws:s3:::${bucket}/"}
    done
    printf '%s\n' "$doc" >"$tmp_dir/$name.json"
    mc admin policy create "$ALIAS" "$name" "$tmp_dir/$name.json" >/dev/null
    log "policy $name"
done

# 4. One user per policy: access key = service name, secret from MINIO_<SERVICE>_SECRET_KEY.
is_required() {
    local user
    for user in $REQUIRED_USERS; do
        [[ $user == "$1" ]] && return 0
    done
    return 1
}

for file in "${policy_files[@]}"; do
    user=$(basename "$file" .json)
    secret_var="MINIO_${user^^}_SECRET_KEY"
    secret=${!secret_var:-}
    if [[ -z $secret ]]; then
        is_required "$user" && die "$secret_var is not set (user $user is required)"
        log "user $user skipped ($secret_var not set)"
        continue
    fi
    ((${#secret} >= 8)) || die "$secret_var must be at least 8 characters (MinIO's minimum)"
    mc admin user add "$ALIAS" "$user" "$secret" >/dev/null
    if ! out=$(mc admin policy attach "$ALIAS" "$user" --user "$user" 2>&1); then
        # Attaching a policy that is already attached is reported as an error: that is fine.
        [[ $out == *"already in effect"* ]] || die "attaching policy $user to user $user: $out"
    fi
    log "user $user with policy $user"
done

log "done"
