"""A contract's `schedule` section: when `ingest_<dataset>` runs by itself, and which partition
each run ingests.

```yaml
schedule:
  cron: "0 3 * * *"     # required: the ticks (a 5-field cron), in `timezone` (default UTC)
  partition_lag: 1      # a tick ingests the partition this many ticks earlier (default 1: at
                        # 03:00 on the 2nd, the partition of the 1st); 0: the tick's own
  start: 2024-01-01     # required: the first partition the schedule knows (backfills start here)
  end: 2024-12-31       # optional: the last one (a closed history: no runs after it)
  catchup: false        # true: the scheduler runs every tick missed since start (oldest first)
  wait: 6h              # how long a run waits for its partition's data before it fails and the
                        # deadline alert goes out (<N>s|m|h|d; default 6h; 0: no wait)
```

A scheduled contract's DAGs are partition-aware: each run of `ingest_<dataset>` carries the
partition key of its tick (`2024-01-05`, `2024-01-05T13` for `hour`, `2024-01` for `month`), so
Airflow's backfill and catch-up name partitions, and `validate_<dataset>` runs once per key it
receives. Nothing here imports Airflow: the DAG files turn this into timetables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ml import partitions
from ml.contract_yaml import Checker, parse_duration, show

SCHEDULE_KEYS = {"cron", "partition_lag", "timezone", "start", "end", "catchup", "wait"}
# A partition's key as the timetable formats it from the partition's date: the keys of
# ml.partitions (a snapshot's scheduled run names its day).
KEY_FORMATS = {**partitions.KEY_FORMAT, partitions.SNAPSHOT: partitions.KEY_FORMAT[partitions.DAY]}
DEFAULT_WAIT = timedelta(hours=6)


@dataclass(frozen=True)
class Schedule:
    """A checked `schedule` section."""

    cron: str
    start: date
    partition_lag: int = 1
    timezone: str = "UTC"
    end: date | None = None
    catchup: bool = False
    wait: timedelta = DEFAULT_WAIT

    def key_format(self, granularity: str) -> str:
        """The strftime format of the partition keys of a contract of `granularity`."""
        return KEY_FORMATS[granularity]


def check_schedule(check: Checker, spec: Any) -> Schedule | None:
    """The `schedule` section checked (`file:line: schedule.<key>: message` when broken), or
    None when the contract has none."""
    if spec is None:
        return None
    check.mapping(("schedule",), spec, SCHEDULE_KEYS)
    for key in ("cron", "start"):
        if key not in spec:
            check.fail(("schedule",), f"missing required key {key!r}")
    cron = spec["cron"]
    if not isinstance(cron, str) or len(cron.split()) != 5 or not croniter.is_valid(cron):
        check.fail(("schedule", "cron"), f"must be a 5-field cron expression, got {show(cron)}")
    lag = spec.get("partition_lag", 1)
    if not isinstance(lag, int) or isinstance(lag, bool) or not 0 <= lag <= 366:
        check.fail(("schedule", "partition_lag"), f"must be an integer 0..366, got {show(lag)}")
    start, end = _day(check, spec, "start"), _day(check, spec, "end")
    if end is not None and end < start:
        check.fail(("schedule", "end"), f"{end} is before start {start}")
    timezone = spec.get("timezone", "UTC")
    if not isinstance(timezone, str) or not _known_timezone(timezone):
        check.fail(("schedule", "timezone"), f"must be an IANA time zone, got {show(timezone)}")
    catchup = spec.get("catchup", False)
    if not isinstance(catchup, bool):
        check.fail(("schedule", "catchup"), f"must be true or false, got {show(catchup)}")
    wait = parse_duration(spec.get("wait", "6h"))
    if wait is None:
        check.fail(
            ("schedule", "wait"), f"must be <N>s, <N>m, <N>h, <N>d or 0, got {show(spec['wait'])}"
        )
    return Schedule(cron, start, lag, timezone, end, catchup, wait)


def _day(check: Checker, spec: dict[str, Any], key: str) -> date | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, date):  # YAML reads 2024-01-01 as a date
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        check.fail(("schedule", key), f"must be a date (YYYY-MM-DD), got {show(value)}")
    return None


def _known_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
