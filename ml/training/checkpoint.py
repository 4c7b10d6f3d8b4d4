"""Training checkpoints in object storage, committed atomically, so a retry resumes.

A checkpoint is one object `epoch-<n>.pt` (model, optimizer, grad scaler, early-stopping state,
history and RNG states). It becomes the checkpoint only when the pointer `LATEST.json` (epoch,
key, sha256, and the same for the checkpoint before it) is written after it: an S3 PUT replaces
an object whole, so a reader sees the old pointer or the new one, never a half-written
checkpoint. A crash between the two leaves an orphan object that the next save overwrites or
prunes.

The folder is keyed by the task instance *and* its inputs (feature version, training params):
a cleared task that now trains another feature set, or other params, never resumes the old
weights. A checkpoint whose checksum fails (or that is missing) falls back to the one before
it; with none good, training starts over (logged), never a permanent failure.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
from typing import Any

import numpy as np
import torch

from ml import storage
from ml.errors import BadInputError
from ml.settings import get_settings

log = logging.getLogger(__name__)

POINTER = "LATEST.json"
KEEP = 2  # checkpoints kept: the committed one and the one before it


class CheckpointError(BadInputError):
    """A checkpoint that cannot be written or read back (names the key and why)."""


def task_key(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """A stable key for one Airflow task instance: the same on every attempt (retry)."""
    raw = json.dumps([dag_id, run_id, task_id, int(map_index)])
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def inputs_key(feature_version: str, params: dict[str, Any]) -> str:
    """A key for what a training resumes: the feature version and the training params."""
    raw = json.dumps(
        {"feature_version": feature_version, "params": params}, sort_keys=True, default=str
    )
    return "in-" + hashlib.sha256(raw.encode()).hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    random.setstate(_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


class CheckpointStore:
    """Checkpoints of one training task instance under `<bucket>/<prefix>` (S3, no scheme)."""

    def __init__(self, prefix: str, fs=None) -> None:
        self.prefix = prefix.removeprefix("s3://").rstrip("/")
        self.fs = fs or storage.filesystem()
        if "file" in self.fs.protocol:  # a local folder (tests): S3 needs no folders
            self.fs.makedirs(self.prefix, exist_ok=True)

    @classmethod
    def for_task(
        cls, dataset: str, key: str, *, feature_version: str = "", params: dict | None = None
    ) -> CheckpointStore:
        """The checkpoints of one task instance training one feature set with one set of
        params: `checkpoints/<dataset>/<task key>/<inputs key>`."""
        inputs = inputs_key(feature_version, params or {})
        return cls(f"{get_settings().bucket('mlflow')}/checkpoints/{dataset}/{key}/{inputs}")

    @property
    def url(self) -> str:
        return f"s3://{self.prefix}"

    def latest(self) -> dict | None:
        """The committed pointer, or None when no checkpoint was committed yet."""
        path = f"{self.prefix}/{POINTER}"
        try:
            return json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            return None

    def save(self, epoch: int, state: dict[str, Any]) -> str:
        buf = io.BytesIO()
        torch.save({**state, "epoch": epoch}, buf)
        data = buf.getvalue()
        key = f"epoch-{epoch:06d}.pt"
        self.fs.pipe_file(f"{self.prefix}/{key}", data)
        before = self.latest()
        pointer = {"epoch": epoch, "key": key, "sha256": hashlib.sha256(data).hexdigest()}
        if before and before.get("key") != key:
            pointer["previous"] = {k: before[k] for k in ("epoch", "key", "sha256")}
        self.fs.pipe_file(f"{self.prefix}/{POINTER}", json.dumps(pointer).encode())  # commit
        self._prune(keep={key, *(p["key"] for p in [pointer.get("previous")] if p)})
        log.info("checkpoint epoch %s -> %s/%s (%s bytes)", epoch, self.url, key, len(data))
        return key

    def load(self) -> dict[str, Any] | None:
        """The committed checkpoint (checksum verified), else the one before it, else None
        (no checkpoint, or none that is good: training starts over)."""
        pointer = self.latest()
        candidates = [c for c in (pointer, (pointer or {}).get("previous")) if c]
        for entry in candidates:
            try:
                return self._read(entry)
            except CheckpointError as exc:
                log.warning("%s; falling back to the checkpoint before it", exc)
        if candidates:
            log.warning("checkpoint %s: no good checkpoint left, training starts over", self.url)
        return None

    def _read(self, entry: dict[str, Any]) -> dict[str, Any]:
        path = f"{self.prefix}/{entry['key']}"
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            raise CheckpointError(
                f"checkpoint {self.url}: {POINTER} names {entry['key']}, which is missing"
            ) from None
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise CheckpointError(f"checkpoint s3://{path}: checksum differs from {POINTER}")
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    def _prune(self, keep: set[str]) -> None:
        try:
            keys = sorted(p.rsplit("/", 1)[-1] for p in self.fs.ls(self.prefix, detail=False))
        except FileNotFoundError:
            return
        blobs = [k for k in keys if k.startswith("epoch-") and k.endswith(".pt")]
        for old in blobs[:-KEEP]:
            if old not in keep:
                self.fs.rm_file(f"{self.prefix}/{old}")
        self.fs.invalidate_cache(self.prefix)
