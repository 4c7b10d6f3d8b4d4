"""Splits by time without leakage; the feature version."""

from __future__ import annotations

import numpy as np
import pytest

from ml.features import sets
from ml.features.sets import TooFewPartitions
from ml.settings import get_settings

pytestmark = pytest.mark.unit


def test_split_is_by_time_without_leakage():
    parts = [f"date=2013-01-{d:02d}" for d in range(1, 11)]
    split = sets.split_partitions(parts, {"train": 0.7, "validation": 0.15, "test": 0.15})
    assert (
        max(split["train"])
        < min(split["validation"])
        <= max(split["validation"])
        < min(split["test"])
    )
    assert sorted(split["train"] + split["validation"] + split["test"]) == parts
    with pytest.raises(TooFewPartitions, match="at least 3 partitions"):
        sets.split_partitions(parts[:2], {})


def test_no_test_day_before_a_train_day():
    days = [f"date=2013-{m:02d}-{d:02d}" for m in (1, 2) for d in range(1, 29)]
    shuffled = list(np.random.default_rng(0).permutation(days))
    split = sets.split_partitions(shuffled, {"train": 0.6, "validation": 0.2, "test": 0.2})
    assert max(split["train"]) < min(split["validation"])
    assert max(split["validation"]) < min(split["test"])
    assert sorted(d for part in split.values() for d in part) == sorted(days)
    assert not set(split["train"]) & set(split["test"])


def test_feature_version_changes_with_any_input(contract):
    base = sets.feature_version(["s3://validated/a/1", "s3://validated/b/2"], contract, {"p": 1})
    assert base == sets.feature_version(
        ["s3://validated/b/2", "s3://validated/a/1"], contract, {"p": 1}
    )
    assert base != sets.feature_version(["s3://validated/a/1"], contract, {"p": 1})
    assert base != sets.feature_version(
        ["s3://validated/a/1", "s3://validated/b/2"], contract, {"p": 2}
    )


def test_feature_version_changes_with_the_code_version(contract, monkeypatch):
    inputs = ["s3://validated/flights/date=2013-01-01/b1"]
    before = sets.feature_version(inputs, contract, {})
    monkeypatch.setattr(sets, "FEATURE_CODE_VERSION", "next")
    assert sets.feature_version(inputs, contract, {}) != before


def test_feature_set_ref_is_where_the_feature_set_is_committed():
    bucket = get_settings().bucket("features")
    assert sets.feature_set_ref("flights", "fv-1") == f"s3://{bucket}/flights/fv-1"
