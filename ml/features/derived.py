"""Derived columns computed from joined raw rows, the model's input columns, and the target.

numpy/pandas only: this ships inside the registered model with the transform.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ml.errors import ContractError
from ml.features import target as _target
from ml.features.target import TARGET  # noqa: F401  (re-exported: the target column)

if TYPE_CHECKING:
    import pandas as pd

    from ml.contracts import Contract

log = logging.getLogger(__name__)


def _calendar(df: pd.DataFrame):
    """The rows' dates from year, month, day as numpy `datetime64[D]`, and a mask of the rows
    that have all three (vectorized: pandas' `to_datetime` of a dict is ~10x slower)."""
    import numpy as np

    y, m, d = (df[c].to_numpy(dtype="float64", na_value=np.nan) for c in ("year", "month", "day"))
    ok = ~(np.isnan(y) | np.isnan(m) | np.isnan(d))
    months = np.where(ok, (y - 1970) * 12 + (m - 1), 0).astype("int64").astype("datetime64[M]")
    days = months.astype("datetime64[D]") + np.where(ok, d - 1, 0).astype("timedelta64[D]")
    return days, ok


def _day_of_year_angle(df: pd.DataFrame):
    import numpy as np

    days, ok = _calendar(df)
    day_of_year = (days - days.astype("datetime64[Y]").astype("datetime64[D]")).astype("int64") + 1
    return np.where(ok, 2 * np.pi * day_of_year / 365.25, np.nan)


def _minute_of_day_angle(df: pd.DataFrame):
    import numpy as np

    hhmm = df["sched_dep_time"].to_numpy(dtype="float64")
    return 2 * np.pi * ((hhmm // 100) * 60 + hhmm % 100) / 1440.0


def _dep_hour(df):
    return (df["sched_dep_time"] // 100).astype("float64")


def _dep_time_sin(df):
    import numpy as np

    return np.sin(_minute_of_day_angle(df))


def _dep_time_cos(df):
    import numpy as np

    return np.cos(_minute_of_day_angle(df))


@lru_cache(maxsize=1)
def _digits():
    import numpy as np

    return np.array([str(i) for i in range(32)], dtype=object)


def _small_ints_as_text(values, ok, index):
    """Integers 0..31 as their decimal text ("3"), missing where not `ok`."""
    import numpy as np
    import pandas as pd

    codes = np.where(ok, values, 0).astype("int64")
    return pd.Series(np.where(ok, _digits()[codes], None), index=index, dtype="string")


def _weekday(df):
    days, ok = _calendar(df)
    weekday = (days.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    return _small_ints_as_text(weekday, ok, df.index)


def _month_of_year(df):
    import numpy as np

    month = df["month"].to_numpy(dtype="float64", na_value=np.nan)
    return _small_ints_as_text(month, ~np.isnan(month), df.index)


def _doy_sin(df):
    import numpy as np

    return np.sin(_day_of_year_angle(df))


def _doy_cos(df):
    import numpy as np

    return np.cos(_day_of_year_angle(df))


def _route(df):
    return df["origin"].astype("string") + "-" + df["dest"].astype("string")


def _plane_age(df):
    import pandas as pd

    # Years since the plane was built; missing when the tail number or its year is unknown.
    built = pd.to_numeric(df["plane_year"], errors="coerce").astype("float64")
    return df["year"].astype("float64") - built


# name -> (function of the joined raw frame, kind, the raw columns it reads)
DERIVED: dict[str, tuple[Any, str, tuple[str, ...]]] = {
    "dep_hour": (_dep_hour, "numeric", ("sched_dep_time",)),
    "dep_time_sin": (_dep_time_sin, "numeric", ("sched_dep_time",)),
    "dep_time_cos": (_dep_time_cos, "numeric", ("sched_dep_time",)),
    "weekday": (_weekday, "categorical", ("year", "month", "day")),
    "month_of_year": (_month_of_year, "categorical", ("month",)),
    "day_of_year_sin": (_doy_sin, "numeric", ("year", "month", "day")),
    "day_of_year_cos": (_doy_cos, "numeric", ("year", "month", "day")),
    "route": (_route, "categorical", ("origin", "dest")),
    "plane_age": (_plane_age, "numeric", ("year", "plane_year")),
}


def feature_columns(contract: Contract) -> tuple[list[str], list[str]]:
    """(numeric, categorical) input columns of the model, derived ones included."""
    spec = contract.features
    numeric = list(spec.get("numeric", []))
    categorical = list(spec.get("categorical", []))
    for name in spec.get("derived", []):
        if name not in DERIVED:
            raise ContractError(
                f"{contract.path}: features.derived: unknown derived feature {name!r}; "
                f"known: {sorted(DERIVED)}"
            )
        kind = numeric if DERIVED[name][1] == "numeric" else categorical
        if name not in kind:
            kind.append(name)
    return numeric, categorical


def row_keys(contract: Contract) -> list[str]:
    """The columns that identify a row (kept beside features and predictions)."""
    keys = list(contract.features.get("row_keys", []))
    unknown = [k for k in keys if k not in contract.column_names]
    if unknown:
        raise ContractError(
            f"{contract.path}: features.row_keys: {unknown} are not columns of the contract"
        )
    return keys


def add_derived(df: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    return df.assign(**derived_columns(df, names))


def derived_columns(df: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    """The derived features of `df`, by name (without copying `df`)."""
    return {name: DERIVED[name][0](df) for name in names}


def add_target(df: pd.DataFrame, target: dict) -> pd.DataFrame:
    """The encoded target (`ml.features.target`); rows whose source value is missing get NA.

    For flights the missing source value is a cancelled flight (no `dep_delay`): see
    `target.missing` in the contract; `build_features` drops those rows from every split.
    """
    return _target.add_target(df, target)


def with_target(df: pd.DataFrame, target: dict) -> pd.DataFrame:
    """The rows that have a target value, with the target added (`target.missing: drop`).

    One row filter before anything else: the joins then work on the kept rows only.
    """
    return _target.with_target(df, target)
