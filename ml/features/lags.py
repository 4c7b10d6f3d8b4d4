"""Lag features (`features.lags`): a column of the dataset's own committed rows N partitions
(days) before the row's own partition, matched on keys::

    features:
      lags:
        temp_yesterday: {column: temp, partitions: 1}                 # the day before
        temp_week_ago:  {column: temp, partitions: 7, agg: mean}      # a week before
        route_delay_1d: {column: dep_delay, partitions: 1, keys: [origin, dest], agg: mean}

A row of partition `date=D` gets, for each lag, the `agg` (last | first | mean | sum | min |
max | count; default last, the last non-missing value in the batch's row order) of `column`
over the rows of the validated batch of `date=D-N` that have the row's `keys` (no keys: the
whole day). N >= 1, so a lag reads only days strictly before the row's own day: no value of a
later day ever reaches a row, whatever split it is in, at training and at scoring alike. A
day with no validated batch gives missing values, which the transform imputes (the first N
days of any history have none).

The rows of the lag's day are read like a join's (they are committed validated batches), so
lag columns are model inputs like joined columns: scoring reads the same earlier batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from ml import partitions

if TYPE_CHECKING:
    import pandas as pd

    from ml.contracts import Contract

# The column that carries each row's partition (`date=YYYY-MM-DD`) while lags are joined; it
# is dropped once they are.
PARTITION_TAG = "__partition__"


@dataclass(frozen=True)
class Lag:
    name: str
    column: str
    partitions: int
    keys: tuple[str, ...] = ()
    agg: str = "last"


def lags_of(contract: Contract) -> list[Lag]:
    """The contract's lag features, in declared order (checked by `ml.contract_training`)."""
    return [
        Lag(
            name=name,
            column=spec["column"],
            partitions=int(spec["partitions"]),
            keys=tuple(spec.get("keys", [])),
            agg=spec.get("agg", "last"),
        )
        for name, spec in (contract.features.get("lags") or {}).items()
    ]


def shift_partition(partition: str, days: int) -> str:
    """`date=2013-01-02` shifted by `days` (negative: earlier). Lags are of day partitions only
    (`ml.contract_training` refuses them on other granularities)."""
    granularity, key = partitions.split_name(partition)
    if granularity != partitions.DAY:
        raise partitions.PartitionKeyError(
            f"lags shift day partitions (date=YYYY-MM-DD) only, not {partition!r}"
        )
    day = partitions.start(key, granularity) + timedelta(days=days)
    return partitions.name(day, partitions.DAY)


def source_partitions(lags: list[Lag], partitions: list[str]) -> list[str]:
    """The earlier partitions the lags of rows in `partitions` read, in order."""
    return sorted({shift_partition(p, -lag.partitions) for lag in lags for p in partitions})


def read_columns(lags: list[Lag]) -> list[str]:
    """The columns of the dataset the lags read (keys and values)."""
    return list(dict.fromkeys(c for lag in lags for c in (*lag.keys, lag.column)))


def lag_table(lag: Lag, rows: pd.DataFrame) -> pd.DataFrame:
    """The lag's values by (keys, partition they serve): `rows` are the dataset's rows of
    earlier partitions, tagged with their own partition in `PARTITION_TAG`; a value read from
    `date=S` serves the rows of `date=S+N` (N >= 1: only later days, never the same or an
    earlier one)."""
    import pandas as pd

    if lag.partitions < 1:
        raise ValueError(f"lag {lag.name!r}: reads {lag.partitions} partitions back; must be >= 1")
    tags = rows[PARTITION_TAG].astype("string")
    served = {p: shift_partition(p, lag.partitions) for p in tags.dropna().unique()}
    frame = rows[list(lag.keys)].assign(
        **{PARTITION_TAG: tags.map(served).astype("string"), lag.name: rows[lag.column]}
    )
    groups = frame.groupby([*lag.keys, PARTITION_TAG], sort=False, dropna=False, observed=True)[
        lag.name
    ]
    out = getattr(groups, lag.agg)().reset_index()
    if lag.agg == "count" or pd.api.types.is_integer_dtype(out[lag.name]):
        out[lag.name] = out[lag.name].astype("float64")  # a miss makes it float anyway
    return out
