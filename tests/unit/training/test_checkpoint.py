"""Checkpoints: a corrupt one is refused; the task key is stable per task instance."""

from __future__ import annotations

import pytest

from ml.errors import BadInputError
from ml.training import checkpoint
from tests.unit.training._fit import fit

pytestmark = pytest.mark.unit


def _store(tmp_path):
    import fsspec

    return checkpoint.CheckpointStore(str(tmp_path / "ckpt"), fs=fsspec.filesystem("file"))


def _corrupt(path) -> None:
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")


def test_a_corrupt_checkpoint_falls_back_to_the_one_before_it(data, tmp_path, caplog):
    store = _store(tmp_path)
    fit(data, store=store, epochs=2)
    pointer = store.latest()
    assert pointer["previous"]["epoch"] == pointer["epoch"] - 1
    _corrupt(tmp_path / "ckpt" / pointer["key"])
    state = store.load()
    assert state is not None and state["epoch"] == pointer["previous"]["epoch"]
    assert "checksum differs" in caplog.text
    # None good: training starts over, never a permanent failure.
    _corrupt(tmp_path / "ckpt" / pointer["previous"]["key"])
    assert store.load() is None
    assert issubclass(checkpoint.CheckpointError, BadInputError)  # a retry reads the same bytes


def test_checkpoints_are_keyed_by_the_feature_version_and_params():
    a = checkpoint.CheckpointStore.for_task(
        "flights", "k1", feature_version="fv-1", params={"x": 1}
    )
    assert (
        a.url
        == checkpoint.CheckpointStore.for_task(
            "flights", "k1", feature_version="fv-1", params={"x": 1}
        ).url
    )
    for other in (
        checkpoint.CheckpointStore.for_task(
            "flights", "k1", feature_version="fv-2", params={"x": 1}
        ),
        checkpoint.CheckpointStore.for_task(
            "flights", "k1", feature_version="fv-1", params={"x": 2}
        ),
        checkpoint.CheckpointStore.for_task(
            "flights", "k2", feature_version="fv-1", params={"x": 1}
        ),
    ):
        assert other.url != a.url


def test_task_key_is_stable_per_task_instance():
    a = checkpoint.task_key("train_flights", "manual__1", "train_model", -1)
    assert a == checkpoint.task_key("train_flights", "manual__1", "train_model", -1)
    assert a != checkpoint.task_key("train_flights", "manual__2", "train_model", -1)
    assert a != checkpoint.task_key("train_flights", "manual__1", "train_model", 0)
