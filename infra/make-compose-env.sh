#!/usr/bin/env bash
# Write infra/compose.env from infra/compose.env.example, every `change-me` value replaced by a
# fresh random secret (URL-safe; the Airflow Fernet key in its required format).
#   bash infra/make-compose-env.sh [--force] [OUTPUT]     (default OUTPUT: infra/compose.env)
# Refuses to overwrite an existing file without --force: new secrets would no longer match the
# ones already stored in the volumes (Postgres roles, MinIO users, MLflow admin, Fernet-encrypted
# Airflow connections).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
force=false
if [[ ${1:-} == --force ]]; then
    force=true
    shift
fi
out=${1:-$here/compose.env}

if [[ -e $out && $force != true ]]; then
    echo "$out exists; pass --force to overwrite it (see the comment at the top of this script)" >&2
    exit 1
fi

python3 - "$here/compose.env.example" "$out" <<'PY'
import base64
import os
import secrets
import sys

src, dst = sys.argv[1], sys.argv[2]
lines = []
for line in open(src, encoding="utf-8"):
    key, sep, value = line.rstrip("\n").partition("=")
    if sep and not key.startswith("#") and value == "change-me":
        if key == "AIRFLOW_FERNET_KEY":
            value = base64.urlsafe_b64encode(os.urandom(32)).decode()
        else:
            value = secrets.token_hex(24)
        line = f"{key}={value}\n"
    lines.append(line)
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w", encoding="utf-8") as f:
    f.writelines(lines)
print(f"wrote {dst} (mode 600); keep it out of git")
PY
