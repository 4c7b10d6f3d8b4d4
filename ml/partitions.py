"""Partition names and keys, by a contract's granularity (`partition: {granularity}`): the one
place that knows how a partition is spelled.

| granularity | key (Airflow, planners) | name (object storage layout) |
| --- | --- | --- |
| `hour` | `2013-01-05T13` | `hour=2013-01-05T13` |
| `day` | `2013-01-05` | `date=2013-01-05` |
| `month` | `2013-01` | `month=2013-01` |
| `snapshot` | `snapshot` | `snapshot` |

A partition covers `[start, end)`: naive datetimes, read as UTC (a row's partition is the key of
its partition column's value in UTC; naive values are taken as UTC). Names of one granularity
sort in time order. The standard library only: DAG files may import it at parse time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from ml.errors import BadInputError

HOUR, DAY, MONTH, SNAPSHOT = "hour", "day", "month", "snapshot"
GRANULARITIES = (HOUR, DAY, MONTH, SNAPSHOT)
# The prefix of a partition's name (`<prefix>=<key>`) and the strftime format of its key.
PREFIX = {HOUR: "hour", DAY: "date", MONTH: "month"}
KEY_FORMAT = {HOUR: "%Y-%m-%dT%H", DAY: "%Y-%m-%d", MONTH: "%Y-%m"}
_BY_PREFIX = {prefix: g for g, prefix in PREFIX.items()}


class PartitionKeyError(BadInputError):
    """A partition key or name that is not one of its granularity (the message says which)."""


def granularity_of(partition: dict | None) -> str:
    """A contract's granularity (`contract.partition`; default `day`)."""
    granularity = (partition or {}).get("granularity") or DAY
    if granularity not in GRANULARITIES:
        raise PartitionKeyError(f"granularity {granularity!r} is not one of {GRANULARITIES}")
    return granularity


def parse_key(key: str | date, granularity: str = DAY) -> datetime:
    """The start of the partition `key` (`2013-01-05T13`, `2013-01-05`, `2013-01`); a `date`
    (or datetime) is taken as a moment inside the partition. A day contract's key may also be a
    `date`; a partition name of the granularity (`date=2013-01-05`) is accepted too."""
    if granularity == SNAPSHOT:
        raise PartitionKeyError("a snapshot partition has no time range")
    if isinstance(key, date):
        return floor(key, granularity)
    text = str(key)
    prefix, sep, rest = text.partition("=")
    if sep:
        if _BY_PREFIX.get(prefix) != granularity:
            raise PartitionKeyError(
                f"partition {text!r} is not a {granularity} partition ({name_example(granularity)})"
            )
        text = rest
    try:
        start = datetime.strptime(text, KEY_FORMAT[granularity])
    except (KeyError, ValueError):
        raise PartitionKeyError(
            f"partition key {str(key)!r} is not a {granularity} key "
            f"(like {key_example(granularity)!r})"
        ) from None
    return start


def floor(when: date, granularity: str) -> datetime:
    """The start of the partition that holds `when` (a datetime's tz is dropped, read as UTC
    when it has one: convert first)."""
    if not isinstance(when, datetime):
        when = datetime(when.year, when.month, when.day)
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    if granularity == HOUR:
        return when.replace(minute=0, second=0, microsecond=0)
    if granularity == DAY:
        return datetime(when.year, when.month, when.day)
    if granularity == MONTH:
        return datetime(when.year, when.month, 1)
    raise PartitionKeyError(f"granularity {granularity!r} has no time partitions")


def key_of(when: date, granularity: str) -> str:
    """The key of the partition that holds `when`."""
    return floor(when, granularity).strftime(KEY_FORMAT[granularity])


def normalize_key(key: str | date, granularity: str) -> str:
    """`key` in its canonical spelling (`date(2013, 1, 5)` -> `2013-01-05`); checked."""
    if granularity == SNAPSHOT:
        return SNAPSHOT
    return parse_key(key, granularity).strftime(KEY_FORMAT[granularity])


def start(key: str, granularity: str) -> datetime:
    """The first moment of the partition."""
    return parse_key(key, granularity)


def end(key: str, granularity: str) -> datetime:
    """The first moment after the partition (`2013-01` -> 2013-02-01 00:00)."""
    first = parse_key(key, granularity)
    if granularity == HOUR:
        return first + timedelta(hours=1)
    if granularity == DAY:
        return first + timedelta(days=1)
    return datetime(first.year + first.month // 12, first.month % 12 + 1, 1)


def name(key: str | date, granularity: str) -> str:
    """The partition's name in the layout (`2013-01-05` -> `date=2013-01-05`)."""
    if granularity == SNAPSHOT:
        return SNAPSHOT
    return f"{PREFIX[granularity]}={normalize_key(key, granularity)}"


def split_name(partition: str) -> tuple[str, str]:
    """`(granularity, key)` of a partition name (`month=2013-01` -> `("month", "2013-01")`)."""
    if partition == SNAPSHOT:
        return SNAPSHOT, SNAPSHOT
    prefix, sep, key = partition.partition("=")
    granularity = _BY_PREFIX.get(prefix)
    if not sep or granularity is None:
        raise PartitionKeyError(
            f"{partition!r} is not a partition name (hour=..., date=..., month=... or snapshot)"
        )
    return granularity, normalize_key(key, granularity)


def key_of_name(partition: str) -> str:
    """The key in a partition name (`date=2013-01-05` -> `2013-01-05`)."""
    return split_name(partition)[1]


def name_range(partition: str) -> tuple[datetime, datetime]:
    """`[start, end)` of a partition name."""
    granularity, key = split_name(partition)
    return start(key, granularity), end(key, granularity)


def keys_between(
    date_from: str | date, date_to: str | date | None, granularity: str, max_days: int = 366
) -> list[str]:
    """The keys of the partitions that cover the days `date_from`..`date_to` (inclusive, ISO
    days): every hour of those days, every day, or every month touched. At most `max_days`
    days; `PartitionKeyError` for a range that runs backwards or is too long."""
    first = _day(date_from)
    last = _day(date_to) if date_to else first
    if last < first:
        raise PartitionKeyError(f"date range: date_to {last} is before date_from {first}")
    span = (last - first).days + 1
    if span > max_days:
        raise PartitionKeyError(
            f"date range {first}..{last} spans {span} days; at most {max_days} per run"
        )
    if granularity == SNAPSHOT:
        return [SNAPSHOT]
    keys: list[str] = []
    for i in range(span):
        day = first + timedelta(days=i)
        if granularity == HOUR:
            keys += [f"{day.isoformat()}T{h:02d}" for h in range(24)]
        else:
            keys.append(key_of(day, granularity))
    return list(dict.fromkeys(keys))


def overlaps(partition: str, date_from: str | None, date_to: str | None) -> bool:
    """Whether a partition (name) overlaps the days `date_from`..`date_to` (inclusive; either
    may be None: open)."""
    first, after = name_range(partition)
    if date_from and after <= floor(_day(date_from), DAY):
        return False
    return not (date_to and first >= floor(_day(date_to), DAY) + timedelta(days=1))


def key_example(granularity: str) -> str:
    return {HOUR: "2013-01-05T13", DAY: "2013-01-05", MONTH: "2013-01"}.get(granularity, SNAPSHOT)


def name_example(granularity: str) -> str:
    return name(key_example(granularity), granularity)


def _day(value: str | date) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise PartitionKeyError(f"{value!r} is not an ISO day (YYYY-MM-DD)") from None
