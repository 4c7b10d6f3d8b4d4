"""A contract's retraining policy (`model.retrain`): when `preprocess_<dataset>` runs, and over
which window of validated days it builds features (then train and promote follow).

```yaml
model:
  retrain: {every: 7d, window: 90d}
  # every: <N>d | <N>h  (a cadence: preprocess runs on that clock, never on a new batch)
  #      | each_batch   (a new validated batch of the dataset and of its joins starts it)
  #      | on_drift     (no schedule: scoring's drift check starts it)
  # window: <N>d        (the last N validated days, ending at the newest validated day, not
  #                      the clock); absent: all validated history
```

Absent `retrain` (or absent `every`): `each_batch` over all history, what the pipeline did
before the policy existed: a contract keeps its behaviour until its owner picks a cadence and a
window that suit the data's volume and how fast it changes. Whatever the policy, a run whose
inputs, contract, code and params match an existing feature set reuses it and starts no
training (`dags/preprocess.py`): a cadence without new validated data retrains nothing.
Nothing here imports Airflow or storage: the DAG file turns the policy into a schedule and
lists the validated partitions (`ml.partitions` reads their names).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ml import partitions
from ml.contract_yaml import Checker, dotted, parse_duration, show
from ml.errors import ContractError, NotFoundError

RETRAIN_KEYS = {"every", "window", "description"}
MODES = ("interval", "each_batch", "on_drift")
WORDS = ("each_batch", "on_drift")  # `every:` values that are not a duration
DEFAULT_MODE = "each_batch"
MAX_EVERY = timedelta(days=366)
# The date split needs a train, a validation and a test day (ml.features.sets.split_partitions).
MIN_WINDOW_DAYS = 3
WHERE = ("model", "retrain")


@dataclass(frozen=True)
class RetrainPolicy:
    """When preprocessing (and so training) runs, and over which window of validated days."""

    mode: str = DEFAULT_MODE  # interval | each_batch | on_drift
    every: timedelta | None = None  # the cadence of `interval`; None otherwise
    window: timedelta | None = None  # the last N days of validated data; None: all history

    @property
    def retrain_on_drift(self) -> bool:
        """Scoring's drift check starts retraining by default (`on_drift`)."""
        return self.mode == "on_drift"

    def cron(self) -> str | None:
        """The cron expression of an `interval` cadence a cron states exactly (1d, 7d, and hours
        that divide a day), else None (then a fixed delta: 14d or 5h are no cron)."""
        if self.every is None:
            return None
        if self.every == timedelta(days=7):
            return "0 0 * * 1"  # Mondays, 00:00
        hours = self.every // timedelta(hours=1)
        if self.every % timedelta(hours=1) or (24 % hours and hours != 24):
            return None
        return {24: "0 0 * * *", 1: "0 * * * *"}.get(hours, f"0 */{hours} * * *")

    def describe(self) -> str:
        """In words, for the DAG's documentation."""
        when = {
            "interval": f"every {_duration(self.every)}, when new validated data came in",
            "each_batch": "on each new validated batch (of the dataset and of its joins)",
            "on_drift": "when scoring's drift check finds drift (or by hand)",
        }[self.mode]
        span = f"the last {self.window.days} validated days" if self.window else "all history"
        return f"retrains {when}, over {span}"

    def window_dates(
        self, names: Iterable[str], date_from: str | None = None, date_to: str | None = None
    ) -> tuple[str | None, str | None]:
        """The (date_from, date_to) a run builds features over. The run's own dates win: with
        `date_from`, both as given; with `date_to` only, the window ends there. Else the window
        ends at the newest validated day of `names` (the validated partitions, e.g.
        `date=2013-12-31`), never at the clock. Without a window: the dates as given."""
        if self.window is None or date_from:
            return date_from, date_to
        if date_to:
            end = date.fromisoformat(date_to)
        else:
            days = [d for d in map(partition_last_day, names) if d is not None]
            if not days:
                raise NotFoundError("no validated partitions: nothing to end the window at")
            end = max(days)
        start = end - self.window + timedelta(days=1)
        return start.isoformat(), end.isoformat()


def partition_last_day(name: str) -> date | None:
    """The last day a partition holds data of: `date=2013-01-07` -> that day,
    `hour=2013-01-07T05` -> its day, `month=2013-01` -> 2013-01-31; None for a snapshot."""
    try:
        _, after = partitions.name_range(name)
    except partitions.PartitionKeyError:
        return None
    return (after - timedelta(microseconds=1)).date()


def _duration(every: timedelta | None) -> str:
    if every is None:
        return "?"
    if every % timedelta(days=1):
        return f"{every // timedelta(hours=1)}h"
    return f"{every.days}d"


def check_retrain(check: Checker, spec: Any) -> RetrainPolicy:
    """`model.retrain` checked: `file:line: model.retrain.<key>: message` when broken."""
    return read_policy(spec, check.fail)


def policy_of(spec: Any) -> RetrainPolicy:
    """The policy of a checked `model.retrain` value (None: the default)."""

    def fail(where: tuple, message: str) -> None:
        raise ContractError(f"{dotted(where)}: {message}")

    return read_policy(spec, fail)


def read_policy(spec: Any, fail: Callable[[tuple, str], Any]) -> RetrainPolicy:
    """Parse `model.retrain`; `fail(key path, message)` raises on the first broken rule."""
    if spec is None:
        return RetrainPolicy()
    if not isinstance(spec, dict):
        fail(WHERE, f"must be a mapping {{every, window}}, got {show(spec)}")
    unknown = sorted(str(k) for k in spec if k not in RETRAIN_KEYS)
    if unknown:
        fail((*WHERE, unknown[0]), f"unknown key(s) {unknown}; allowed: {sorted(RETRAIN_KEYS)}")
    every = spec.get("every", DEFAULT_MODE)
    mode, cadence = (every, None) if every in WORDS else ("interval", _every(every, fail))
    return RetrainPolicy(mode, cadence, _window(spec.get("window"), fail))


def _every(value: Any, fail: Callable[[tuple, str], Any]) -> timedelta:
    every = parse_duration(value, "dh") if isinstance(value, str) else None
    if not every:
        fail(
            (*WHERE, "every"),
            f"must be a duration <N>d or <N>h (N >= 1), each_batch or on_drift, got {show(value)}",
        )
    if every > MAX_EVERY:
        fail((*WHERE, "every"), f"must be at most {MAX_EVERY.days}d, got {value!r}")
    return every


def _window(value: Any, fail: Callable[[tuple, str], Any]) -> timedelta | None:
    if value is None:
        return None
    window = parse_duration(value, "d") if isinstance(value, str) else None
    if not window:
        fail((*WHERE, "window"), f"must be <N>d (a number of days), or absent, got {show(value)}")
    if window.days < MIN_WINDOW_DAYS:
        fail(
            (*WHERE, "window"),
            f"must hold at least {MIN_WINDOW_DAYS} days (the date split needs a train, a "
            f"validation and a test day), got {value!r}",
        )
    return window
