"""Synthetic flights-shaped data of any size, fitted on the real 2013 NYC flights, for scale tests.

`generate_flights(n_rows, seed)` returns rows with exactly the columns and dtypes of a day of
`ml.sources.nycflights13.nycflights13_rows("flights", day)`; `generate_flights_dask` builds the same kind of
frame partition by partition on the Dask workers; `write_flights_parquet` writes parts for
benchmarks. Output is deterministic by seed: partition `i` of seed `s` is drawn from
`numpy.random.default_rng([s, i])`, and `generate_flights(n, s)` is partition 0, so it equals
`generate_flights_dask(n, 1, s).compute()`.

What is drawn from is fitted once per process (`ml.dev.synthetic_fit`). Draws are vectorised
with numpy; strings are built as pyarrow `take`s of small dictionaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ml.dev.synthetic_fit import COLUMNS, FlightsModel, fitted_model, group_of

if TYPE_CHECKING:
    import dask.dataframe as dd

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
DEFAULT_ROWS_PER_PART = 1_000_000
MAX_FLIGHT = 9999  # the flights contract's bound


def _minutes_to_clock(minutes: np.ndarray, midnight: int) -> np.ndarray:
    m = np.mod(minutes, 1440)
    clock = (m // 60) * 100 + m % 60
    return np.where(clock == 0, midnight, clock)


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


def _cdf_draw(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Indexes drawn from a cumulative frequency table (shifted by a group code or not)."""
    index = np.searchsorted(cdf, u, side="right")
    np.minimum(index, len(cdf) - 1, out=index)
    return index


def _draw_flight_numbers(model: FlightsModel, carrier: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Flight numbers from each row's carrier's pool (`u` uniform in [0, 1))."""
    return model.flight_values[_cdf_draw(model.flight_cdf, carrier + u)]


def _calendar(start: str | date, end: str | date) -> pd.DatetimeIndex:
    """The days of [start, end], both included."""
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
    arr = pa.array(dictionary, type=pa.string()).take(pa.array(codes, mask=mask))
    return pd.array(arr, dtype=dtype)


@dataclass(frozen=True)
class _Schedule:
    """Scheduled day and departure of each row, sorted like the real table."""

    day_idx: np.ndarray  # index into the calendar
    sched_min: np.ndarray  # local minute of day
    hour: np.ndarray
    minute: np.ndarray
    route: np.ndarray  # index into the model's routes


@dataclass(frozen=True)
class _Times:
    """Clock times, delays and air time of each row, NaN where the flight did not get there."""

    dep_time: np.ndarray
    dep_delay: np.ndarray
    arr_time: np.ndarray
    sched_arr_time: np.ndarray
    arr_delay: np.ndarray
    air_time: np.ndarray
    cancelled: np.ndarray


def _generate(
    model: FlightsModel, n: int, rng: np.random.Generator, start: str | date, end: str | date
) -> pd.DataFrame:
    """`n` rows drawn from `rng` (the order of the draws fixes the output of a seed)."""
    cal = _calendar_for(model, start, end)
    sched = _draw_schedule(model, cal, n, rng)
    times = _draw_times(model, cal, sched, n, rng)
    carrier = model.route_carrier[sched.route]
    flight = _draw_flight_numbers(model, carrier, rng.random(n))
    time_hour_us = cal.time_hour_us[sched.day_idx, sched.hour]
    _make_keys_unique(model, flight, carrier, model.route_origin[sched.route], time_hour_us, rng)
    tail = _cdf_draw(model.tail_cdf, carrier + rng.random(n))
    tail_missing = times.cancelled & (rng.random(n) < model.tail_missing_if_cancelled[carrier])
    return _frame(model, cal, sched, times, flight, tail, tail_missing, time_hour_us)


def _draw_schedule(
    model: FlightsModel, cal: _Calendar, n: int, rng: np.random.Generator
) -> _Schedule:
    """Date and scheduled minute, sorted like the real table (by day, then scheduled time),
    and the route."""
    day_idx = _cdf_draw(cal.cdf, rng.random(n))
    sched_idx = _cdf_draw(model.sched_cdf, rng.random(n))
    key = np.sort(day_idx * 1440 + model.sched_minutes[sched_idx])
    day_idx, sched_min = np.divmod(key, 1440)
    hour, minute = np.divmod(sched_min, 60)
    route = _cdf_draw(model.route_cdf, rng.random(n))
    return _Schedule(day_idx, sched_min, hour, minute, route)


def _draw_times(
    model: FlightsModel, cal: _Calendar, sched: _Schedule, n: int, rng: np.random.Generator
) -> _Times:
    """Cancellations, diversions, delays and air times, conditioned on hour band and season."""
    route = sched.route
    group = group_of(sched.hour, cal.month[sched.day_idx])
    cancelled = rng.random(n) < model.cancel_rate[group]
    u = rng.random(n)
    diverted = ~cancelled & (u < model.diverted_rate)
    no_arr_delay = ~cancelled & ~diverted & (u < model.diverted_rate + model.no_arr_delay_rate)
    dep_delay = np.rint(_quantile_draw(model.dep_delay_q, rng.random(n), group))
    arr_delay = dep_delay + np.rint(_quantile_draw(model.arr_minus_dep_q, rng.random(n)))
    np.clip(arr_delay, *model.arr_delay_range, out=arr_delay)
    air_time = model.route_air_time[route] + _quantile_draw(model.air_time_resid_q, rng.random(n))
    air_time = np.clip(np.rint(air_time), *model.air_time_range)

    sched_arr_min = sched.sched_min + model.route_block[route]
    dep_min = sched.sched_min + dep_delay.astype(np.int64)
    dep_time = _minutes_to_clock(dep_min, 2400).astype(np.float64)
    arr_min = sched_arr_min + arr_delay.astype(np.int64)
    arr_time = _minutes_to_clock(arr_min, 2400).astype(np.float64)

    dep_time[cancelled] = np.nan
    dep_delay[cancelled] = np.nan
    no_arrival = cancelled | diverted
    arr_time[no_arrival] = np.nan
    no_delay = no_arrival | no_arr_delay
    arr_delay[no_delay] = np.nan
    air_time[no_delay] = np.nan
    sched_arr_time = _minutes_to_clock(sched_arr_min, 2359)
    return _Times(dep_time, dep_delay, arr_time, sched_arr_time, arr_delay, air_time, cancelled)


def _frame(
    model: FlightsModel,
    cal: _Calendar,
    sched: _Schedule,
    times: _Times,
    flight: np.ndarray,
    tail: np.ndarray,
    tail_missing: np.ndarray,
    time_hour_us: np.ndarray,
) -> pd.DataFrame:
    """The rows as a frame with the columns and dtypes of the real flights."""
    dt = model.dtypes
    route = sched.route
    time_hour = pd.DatetimeIndex(time_hour_us.astype("datetime64[us]")).tz_localize("UTC")
    columns = {
        "year": cal.year[sched.day_idx],
        "month": cal.month[sched.day_idx],
        "day": cal.day[sched.day_idx],
        "dep_time": times.dep_time,
        "sched_dep_time": sched.hour * 100 + sched.minute,
        "dep_delay": times.dep_delay,
        "arr_time": times.arr_time,
        "sched_arr_time": times.sched_arr_time,
        "arr_delay": times.arr_delay,
        "carrier": _strings(model.carriers, model.route_carrier[route], dt["carrier"]),
        "flight": flight,
        "tailnum": _strings(model.tail_values, tail, dt["tailnum"], tail_missing),
        "origin": _strings(model.airports, model.route_origin[route], dt["origin"]),
        "dest": _strings(model.airports, model.route_dest[route], dt["dest"]),
        "air_time": times.air_time,
        "distance": model.route_distance[route],
        "hour": sched.hour,
        "minute": sched.minute,
        "time_hour": time_hour.as_unit(dt["time_hour"].unit),
    }
    df = pd.DataFrame(columns, copy=False)
    for c in (*INT_COLUMNS, "sched_arr_time"):
        if df[c].dtype != dt[c]:
            df[c] = df[c].astype(dt[c])
    return df


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
            flight[dup] = _draw_flight_numbers(model, carrier[dup], rng.random(len(dup)))
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
