"""The lock that serializes a model's alias moves across processes, in object storage.

It needs no delete right on the audit log: the lock is one object under its own prefix
(`reports/locks/<model>/alias.json`; the promoting identity may create, read and delete there and
nowhere else in `reports`). It is taken by a conditional create (`If-None-Match: *`: of two
writers one wins) and given back by a conditional delete (`If-Match: <its ETag>`), so a holder
never removes a lock someone else took after it. A holder that died leaves its lock; after
`STALE_AFTER_S` another process breaks it, again by ETag, so two breakers never both win. The
ETag is the fencing token: before the aliases move, the holder checks that the lock is still the
one it created (`AliasLock.check`), so a holder whose lock was broken as stale refuses instead of
moving aliases beside the new holder.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ml.errors import RefusedError
from ml.settings import Settings, get_settings

log = logging.getLogger(__name__)

LOCK_PREFIX = "locks"
STALE_AFTER_S = 900.0  # no alias move takes this long: a lock this old has lost its holder
_TAKEN = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


class AliasLockError(RefusedError):
    """The lock could not be taken in time, or was lost before the aliases moved."""


def holder_name() -> str:
    """Who holds a lock: user, host and process."""
    return f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}"


def lock_key(model_name: str) -> str:
    return f"{LOCK_PREFIX}/{model_name}/alias.json"


def s3_client(settings: Settings | None = None):
    """A boto3 S3 client with the keys in use (see `ml.identity`)."""
    import boto3

    s = settings or get_settings()
    opts = s.s3_storage_options()
    return boto3.client(
        "s3",
        endpoint_url=s.s3_endpoint_url,
        region_name=s.aws_region,
        aws_access_key_id=opts["key"],
        aws_secret_access_key=opts["secret"],
    )


@dataclass
class AliasLock:
    """A held lock: where it is and the ETag that proves it is still ours."""

    model_name: str
    bucket: str
    key: str
    etag: str
    token: str
    _s3: Any

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def check(self) -> None:
        """Refuse when the lock is no longer the one this holder created (broken as stale)."""
        from botocore.exceptions import ClientError

        try:
            etag = self._s3.head_object(Bucket=self.bucket, Key=self.key)["ETag"]
        except ClientError as exc:
            if _code(exc) not in {"404", "NoSuchKey", "NotFound"}:
                raise
            etag = None
        if etag != self.etag:
            raise AliasLockError(
                f"the alias lock of {self.model_name} ({self.url}) was broken as stale and is "
                "no longer held by this process: nothing moved; run the promotion again"
            )

    def release(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
        except ClientError as exc:
            if _code(exc) not in _TAKEN | {"404", "NoSuchKey"}:
                raise
            log.warning("alias lock %s was no longer ours when released", self.url)


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _try_create(s3, bucket: str, key: str, body: bytes) -> str | None:
    """The new lock's ETag, or None when a lock is there."""
    from botocore.exceptions import ClientError

    try:
        return s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")["ETag"]
    except ClientError as exc:
        if _code(exc) not in _TAKEN:
            raise
        return None


def _held(s3, bucket: str, key: str) -> tuple[dict[str, Any], str] | None:
    """The lock's content and ETag, or None when it went away meanwhile."""
    from botocore.exceptions import ClientError

    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _code(exc) not in {"404", "NoSuchKey"}:
            raise
        return None
    return json.loads(obj["Body"].read()), obj["ETag"]


def _break_if_stale(s3, bucket: str, key: str, held: dict[str, Any], etag: str) -> bool:
    """Delete a stale lock, only the very one that was read (by ETag); True when it went."""
    from botocore.exceptions import ClientError

    if time.time() - float(held.get("since", 0)) <= STALE_AFTER_S:
        return False
    log.warning("breaking stale alias lock s3://%s/%s held by %s", bucket, key, held)
    try:
        s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except ClientError as exc:
        if _code(exc) not in _TAKEN | {"404", "NoSuchKey"}:
            raise
    return True


@contextlib.contextmanager
def alias_lock(
    model_name: str, timeout: float = 300.0, settings: Settings | None = None
) -> Iterator[AliasLock]:
    """Hold the alias lock of `model_name` for the block (waiting up to `timeout` s)."""
    s = settings or get_settings()
    s3 = s3_client(s)
    bucket, key = s.bucket("reports"), lock_key(model_name)
    token = uuid.uuid4().hex
    body = json.dumps({"token": token, "holder": holder_name(), "since": time.time()}).encode()
    deadline = time.monotonic() + timeout
    while (etag := _try_create(s3, bucket, key, body)) is None:
        found = _held(s3, bucket, key)
        if found is None or _break_if_stale(s3, bucket, key, *found):
            continue  # released or broken meanwhile: try again at once
        if time.monotonic() > deadline:
            raise AliasLockError(
                f"alias moves of {model_name} are locked by {found[0].get('holder')} "
                f"(s3://{bucket}/{key}); waited {timeout:.0f}s"
            )
        time.sleep(0.2)
    lock = AliasLock(model_name, bucket, key, etag, token, s3)
    try:
        yield lock
    finally:
        lock.release()
