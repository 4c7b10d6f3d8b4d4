"""Preprocessing and training of the reference contracts of the other target kinds on real
servers (S3 API server, Dask cluster, MLflow): the encoded target and the model's outputs."""

from __future__ import annotations

import pytest

from ml import ingest
from ml.features import build, sets
from ml.features.derived import TARGET
from ml.validation.batch import validate_batch

pytestmark = pytest.mark.integration

DATE_FROM, DATE_TO = "2013-01-01", "2013-01-05"
DAYS = ingest.days_between(DATE_FROM, DATE_TO)


@pytest.mark.parametrize("dataset", ["flights_delay_class", "flights_delay_minutes"])
def test_features_of_each_kind(s3_server, dask_cluster, dataset):
    for day in DAYS:
        validate_batch(ingest.ingest_partition(dataset, day).ref, dataset)
    built = build.build_features(dataset, DATE_FROM, DATE_TO)
    train = sets.read_split(sets.read_feature_manifest(built.ref), "train")
    assert len(train) and train[TARGET].notna().all()
    if dataset == "flights_delay_class":
        assert set(train[TARGET].unique()) == {0.0, 1.0, 2.0}
    else:
        assert train[TARGET].min() < 0 < train[TARGET].max()  # minutes, early and late
