"""Checkpoints: a corrupt one is refused; the task key is stable per task instance."""

from __future__ import annotations

import pytest

from ml.errors import BadInputError
from ml.training import checkpoint
from tests.unit.training._fit import fit

pytestmark = pytest.mark.unit


def test_a_corrupt_checkpoint_is_refused(data, tmp_path):
    import fsspec

    store = checkpoint.CheckpointStore(str(tmp_path / "ckpt"), fs=fsspec.filesystem("file"))
    fit(data, store=store, epochs=1)
    blob = tmp_path / "ckpt" / store.latest()["key"]
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(checkpoint.CheckpointError, match="checksum"):
        store.load()
    assert issubclass(checkpoint.CheckpointError, BadInputError)  # a retry reads the same bytes


def test_task_key_is_stable_per_task_instance():
    a = checkpoint.task_key("train_flights", "manual__1", "train_model", -1)
    assert a == checkpoint.task_key("train_flights", "manual__1", "train_model", -1)
    assert a != checkpoint.task_key("train_flights", "manual__2", "train_model", -1)
    assert a != checkpoint.task_key("train_flights", "manual__1", "train_model", 0)
