"""S3 users and policies in an S3 server that enforces IAM (moto's server), as compose makes them
in MinIO: one user per policy file of `infra/minio/policies/` (MinIO policy JSON is AWS IAM
JSON), each with that policy only.

moto enforces IAM when its server starts with `INITIAL_NO_AUTH_ACTION_COUNT=<n>` in its
environment (`moto_iam_env`): the first n requests are not checked, enough for
`bootstrap_admin` to create an all-powerful admin with a key; every later request is checked
against the policies of the caller's key.
"""

from __future__ import annotations

import json
from pathlib import Path

from ml.identity import S3Identity
from ml.settings import ZONES, Settings, get_settings

POLICY_DIR = Path(__file__).resolve().parents[3] / "infra" / "minio" / "policies"
ADMIN_USER = "mlpipe-admin"
_ADMIN_REQUESTS = 3  # CreateUser, PutUserPolicy, CreateAccessKey


def moto_iam_env() -> dict[str, str]:
    """Environment of a moto server that enforces IAM after the admin is made."""
    return {"INITIAL_NO_AUTH_ACTION_COUNT": str(_ADMIN_REQUESTS)}


def policy_documents(
    policy_dir: Path = POLICY_DIR, settings: Settings | None = None
) -> dict[str, dict]:
    """Each policy file by name, the default bucket names replaced by the configured ones (as
    `infra/minio/bootstrap.sh` does)."""
    s = settings or get_settings()
    docs = {}
    for path in sorted(policy_dir.glob("*.json")):
        text = path.read_text()
        for zone in ZONES:
            bucket = s.bucket(zone)
            text = text.replace(f'arn:aws:s3:::{zone}"', f'arn:aws:s3:::{bucket}"')
            text = text.replace(f"arn:aws:s3:::{zone}/", f"arn:aws:s3:::{bucket}/")
        docs[path.stem] = json.loads(text)
    return docs


def _iam(endpoint: str, region: str, identity: S3Identity | None):
    import boto3

    keys = (identity.access_key_id, identity.secret_access_key) if identity else ("x", "x")
    return boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=keys[0],
        aws_secret_access_key=keys[1],
    )


def _user_with_policy(iam, user: str, document: dict) -> S3Identity:
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName=user, PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return S3Identity(user, key["AccessKeyId"], key["SecretAccessKey"])


def bootstrap_admin(settings: Settings | None = None) -> S3Identity:
    """On a fresh IAM-enforcing server: the admin (every action on everything) and its key."""
    s = settings or get_settings()
    admin = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    return _user_with_policy(_iam(s.s3_endpoint_url, s.aws_region, None), ADMIN_USER, admin)


def create_s3_identities(
    admin: S3Identity, policy_dir: Path = POLICY_DIR, settings: Settings | None = None
) -> dict[str, S3Identity]:
    """One user per policy file, named after it and holding only it; their keys by name."""
    s = settings or get_settings()
    iam = _iam(s.s3_endpoint_url, s.aws_region, admin)
    return {
        name: _user_with_policy(iam, name, doc)
        for name, doc in policy_documents(policy_dir, s).items()
    }


def connection_env(identities: dict[str, S3Identity], settings: Settings | None = None) -> dict:
    """`AIRFLOW_CONN_MLPIPE_S3_<NAME>` for each identity (an `aws` connection with the endpoint
    in its extra), the form `dags/_mlpipe.py` reads."""
    s = settings or get_settings()
    env = {}
    for name, identity in identities.items():
        conn = {
            "conn_type": "aws",
            "login": identity.access_key_id,
            "password": identity.secret_access_key,
            "extra": {"endpoint_url": s.s3_endpoint_url, "region_name": s.aws_region},
        }
        env[f"AIRFLOW_CONN_MLPIPE_S3_{name.upper()}"] = json.dumps(conn)
    return env
