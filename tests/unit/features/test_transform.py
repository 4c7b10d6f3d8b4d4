"""The fitted transform: pandas and Dask alike, unseen and missing values, rare values, its
input columns."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from ml.features import build
from ml.features.derived import TARGET, add_target, row_keys
from ml.features.transform import OOV, FeatureTransform, model_frame

pytestmark = pytest.mark.unit


def test_transform_pandas_and_dask_give_identical_outputs(five_days_joined, contract):
    import dask
    import dask.dataframe as dd

    transform = FeatureTransform.for_contract(contract).fit(five_days_joined)
    expected = transform.apply(five_days_joined)
    with dask.config.set(scheduler="synchronous"):
        ddf = dd.from_pandas(five_days_joined, npartitions=4)
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


def test_transform_maps_unseen_and_missing_to_oov(five_days_joined, contract):
    transform = FeatureTransform.for_contract(contract).fit(five_days_joined)
    odd = five_days_joined.head(3).copy()
    odd["carrier"] = ["ZZ", None, odd["carrier"].iloc[2]]
    odd["temp"] = [np.nan, 1000.0, odd["temp"].iloc[2]]
    out = transform.apply(odd)
    assert out["cat__carrier"].tolist()[:2] == [OOV, OOV]
    assert out["cat__carrier"].iloc[2] != OOV
    assert out["num__temp"].iloc[0] == 0.0  # imputed with the train mean, then scaled
    restored = FeatureTransform.from_json(transform.to_json())
    pd.testing.assert_frame_equal(restored.apply(odd), out)


def test_transform_input_columns_cover_what_it_reads(five_days_joined, contract):
    transform = FeatureTransform.for_contract(contract).fit(five_days_joined)
    only_inputs = five_days_joined[transform.input_columns]
    pd.testing.assert_frame_equal(transform.apply(only_inputs), transform.apply(five_days_joined))


def test_transform_dask_and_pandas_outputs_identical(joined, contract):
    import dask
    import dask.dataframe as dd

    train = add_target(joined, contract.target).dropna(subset=[TARGET])
    transform = FeatureTransform.for_contract(contract).fit(train)
    with dask.config.set(scheduler="synchronous"):
        ddf = dd.from_pandas(train, npartitions=5)
        on_dask = build.fit_on_dask(FeatureTransform.for_contract(contract), ddf)
        keep = [*row_keys(contract), TARGET]
        meta = model_frame(ddf._meta, transform, keep)
        got = ddf.map_partitions(model_frame, transform, keep, meta=meta).compute()
    want = model_frame(train, transform, keep)
    got = got.reset_index(drop=True)
    model_inputs = [c for c in want.columns if c not in keep] + [TARGET]
    pd.testing.assert_frame_equal(got[model_inputs], want[model_inputs])  # bit for bit
    # Dask reads strings as string[pyarrow]: the row keys are the same values.
    pd.testing.assert_frame_equal(
        got[keep].astype("string"), want[keep].astype("string"), check_dtype=False
    )
    assert on_dask.vocab == transform.vocab
    for c in transform.numeric:
        assert on_dask.means[c] == pytest.approx(transform.means[c], rel=1e-9, abs=1e-12)
        assert on_dask.stds[c] == pytest.approx(transform.stds[c], rel=1e-9)
    # The pyfunc path: the transform restored from its JSON artifact, on a plain pandas frame.
    restored = FeatureTransform.from_json(transform.to_json())
    inputs = train[restored.input_columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(restored.apply(inputs), want.drop(columns=keep))


def test_minimum_frequency_sends_rare_values_to_oov(joined, contract):
    transform = FeatureTransform.for_contract(contract, min_frequency=50).fit(joined)
    counts = joined["dest"].value_counts()
    assert set(transform.vocab["dest"]) == set(counts[counts >= 50].index)
    rare = counts[counts < 50].index[0]
    row = joined[joined.dest == rare].head(1)
    assert transform.apply(row)["cat__dest"].iloc[0] == OOV
    assert (
        transform.cardinalities[transform.categorical.index("dest")]
        == len(transform.vocab["dest"]) + 1
    )


def test_unseen_and_missing_values_at_scoring_time(joined, contract):
    transform = FeatureTransform.for_contract(contract).fit(joined)
    rows = joined[transform.input_columns].head(4).copy().reset_index(drop=True)
    rows.loc[0, ["carrier", "plane_type"]] = ["ZZ", "Airship"]  # never seen in train
    rows.loc[1, ["carrier", "dest", "plane_type"]] = [None, None, None]  # missing
    rows.loc[2, ["temp", "plane_seats", "plane_year", "dest_lat"]] = np.nan  # no lookup match
    rows.loc[3, "temp"] = 1e6  # far outside train: scaled, not clipped or dropped
    out = transform.apply(rows)
    assert out.loc[0, "cat__carrier"] == out.loc[0, "cat__plane_type"] == OOV
    assert (out.loc[1, ["cat__carrier", "cat__dest", "cat__plane_type"]] == OOV).all()
    assert out.loc[1, "cat__route"] == OOV  # derived from a missing dest
    # Missing numerics take the train mean: 0 after scaling; derived plane_age too.
    assert (out.loc[2, ["num__temp", "num__plane_seats", "num__dest_lat"]] == 0).all()
    assert out.loc[2, "num__plane_age"] == 0
    assert out.loc[3, "num__temp"] > 1000
    assert not out.isna().any().any()
    with pytest.raises(KeyError, match=r"lack input column\(s\) \['plane_year'\]"):
        transform.apply(rows.drop(columns=["plane_year"]))


def test_dask_fit_with_uneven_partitions_equals_the_pandas_fit(joined, contract):
    """Partitions of very different sizes, an empty one and one where a column is all missing:
    the partition statistics combine to the one-frame fit."""
    import dask
    import dask.dataframe as dd

    rows = joined.copy()
    rows.loc[: len(rows) // 10, "plane_seats"] = np.nan
    want = FeatureTransform.for_contract(contract).fit(rows)
    cuts = [0, 1, 1, len(rows) // 10, len(rows) // 2, len(rows)]
    parts = [rows.iloc[a:b] for a, b in itertools.pairwise(cuts)]
    assert len(parts[1]) == 0 and parts[2]["plane_seats"].isna().all()
    with dask.config.set(scheduler="synchronous"):
        ddf = dd.from_delayed([dask.delayed(p) for p in parts], meta=rows.iloc[:0])
        got = build.fit_on_dask(FeatureTransform.for_contract(contract), ddf)
    assert got.vocab == want.vocab
    for c in want.numeric:
        assert got.means[c] == pytest.approx(want.means[c], rel=1e-12)
        assert got.stds[c] == pytest.approx(want.stds[c], rel=1e-12)
    # And the statistics are pandas' own (sample standard deviation, missing values skipped).
    assert want.means["plane_seats"] == pytest.approx(rows["plane_seats"].mean(), rel=1e-12)
    assert want.stds["plane_seats"] == pytest.approx(rows["plane_seats"].std(), rel=1e-12)
