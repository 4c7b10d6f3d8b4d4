"""Which S3 credentials this code runs with: one least-privilege identity per pipeline stage.

Nothing here is set by default: then every S3 access uses the keys of the settings
(`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`), as it always did. The Airflow edge
(`dags/_mlpipe.py`) reads each stage's connection (`mlpipe_s3_<stage>`) and runs the task body
inside `use_identity(...)`; from then on `Settings.s3_storage_options()`, and with it every
s3fs, boto3, pandas and Dask access of `ml`, uses that stage's keys. Work that runs on the Dask
workers uses the workers' own identity (`dask=`, the `dask` policy) when one is given.

A context variable, not a global: an identity set in one thread or task never leaks into
another, and leaving the block restores what was there before.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field

# The stages that have their own identity, and the policy file each one is held to
# (`infra/minio/policies/<policy>.json`). `dask` is the workers', `mlflow` the tracking server's.
STAGES = ("ingest", "validate", "preprocess", "train", "promote", "score")
SERVICES = ("dask", "mlflow")


@dataclass(frozen=True)
class S3Identity:
    """A named pair of S3 keys (the name is the stage or service it belongs to)."""

    name: str
    access_key_id: str
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True)
class _Active:
    stage: S3Identity | None
    dask: S3Identity | None


_ACTIVE: contextvars.ContextVar[_Active | None] = contextvars.ContextVar(
    "mlpipe_s3_identity", default=None
)


@contextlib.contextmanager
def use_identity(
    identity: S3Identity | None, *, dask: S3Identity | None = None
) -> Iterator[S3Identity | None]:
    """Run the block with `identity`'s keys (None: the settings' keys), and Dask work with
    `dask`'s (None: the same as the block's)."""
    token = _ACTIVE.set(_Active(identity, dask) if identity or dask else None)
    try:
        yield identity
    finally:
        _ACTIVE.reset(token)


def active_identity() -> S3Identity | None:
    """The identity of the current block, None outside any (the settings' keys apply)."""
    active = _ACTIVE.get()
    return active.stage if active else None


def dask_identity() -> S3Identity | None:
    """The identity Dask workers act with in the current block: the `dask=` one, else the
    block's own, else None (the settings' keys)."""
    active = _ACTIVE.get()
    if active is None:
        return None
    return active.dask or active.stage


def identity_env() -> dict[str, str]:
    """`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` of the current block's identity for a child
    process (torchrun), which does not inherit the block; empty outside any."""
    identity = active_identity()
    if identity is None:
        return {}
    return {
        "AWS_ACCESS_KEY_ID": identity.access_key_id,
        "AWS_SECRET_ACCESS_KEY": identity.secret_access_key,
    }
