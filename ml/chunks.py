"""Many small partitions per Airflow task: a range of partitions is grouped into chunks (a month
of days, a day of hours, a year of months), one task each, so that a history load pays one task
start-up per chunk, not per partition. Every partition still becomes its own committed batch with
its own report and lineage; one that fails is named, and the others of its chunk go on.

Light: the DAG files import this module at parse time (no pandas, GX or Dask here)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ml.errors import BadInputError, NotFoundError
from ml.sources.errors import TransientSourceError

log = logging.getLogger(__name__)

# How many characters of a partition key name its chunk, by granularity: a day's key
# (2013-01-05) goes with its month, an hour's (2013-01-05T13) with its day, a month's with its
# year; a snapshot is one partition anyway.
CHUNK_PREFIX = {"day": 7, "hour": 10, "month": 4, "snapshot": 0}


class ChunkFailed(BadInputError):
    """No partition of a chunk was ingested, for reasons a retry would meet again (unreadable
    input, a misconfigured source): the task fails at once, naming each partition's error."""


def key_of(partition_or_ref: str) -> str:
    """The partition key of a partition name (`date=2013-01-05` -> `2013-01-05`) or of a batch
    reference (`s3://raw/flights/date=2013-01-05/<batch>`)."""
    parts = partition_or_ref.rstrip("/").split("/")
    name = parts[-2] if len(parts) > 1 else parts[0]
    return name.split("=", 1)[-1]


def chunk_label(key: str, granularity: str = "day") -> str:
    """The chunk a partition key belongs to (`2013-01-05` -> `2013-01` for days)."""
    size = CHUNK_PREFIX.get(granularity, 7)
    return key[:size] if size else key


def chunked(
    items: Iterable[str],
    granularity: str = "day",
    key=lambda item: item,
    max_size: int | None = None,
) -> list[list]:
    """`items` (partition keys, or batch references with `key=key_of`) grouped by chunk, in the
    order of their first appearance, each chunk in its items' order; a chunk over `max_size`
    items is cut in pieces (`settings.chunk_max_partitions`)."""
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(chunk_label(key(item), granularity), []).append(item)
    size = max_size or 0
    if size < 1:
        return list(groups.values())
    return [group[i : i + size] for group in groups.values() for i in range(0, len(group), size)]


def flat(chunks: Iterable[Iterable]) -> list:
    """The items of `chunks`, in order."""
    return [item for chunk in chunks for item in chunk]


def range_key(keys: list[str]) -> str:
    """The partition key that names a run over many partitions: `<first>..<last>` (one
    partition: its own key). A scheduled contract's manual range run publishes its batches under
    it, so their validation is one partition-aware run, not one per partition."""
    ordered = sorted(keys)
    return ordered[0] if len(ordered) == 1 else f"{ordered[0]}..{ordered[-1]}"


def failures(outcomes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outcomes (XCom form) of partitions that were not ingested."""
    return [o for o in outcomes if o.get("error")]


def raise_when_nothing_went(dataset: str, outcomes: list[dict[str, Any]]) -> None:
    """When no partition of a chunk was ingested, fail its task (nothing of it was committed,
    so nothing is lost): with `NotFoundError` or `TransientSourceError` when a retry may cure
    one of the failures (Airflow retries the chunk with backoff), `ChunkFailed` otherwise (no
    retry). When some partitions went, return: they are published, and the run's verdict names
    the others (a re-run is idempotent)."""
    bad = failures(outcomes)
    if not outcomes or len(bad) < len(outcomes):
        return
    names = "; ".join(f"{o['key']}: {o['error']}" for o in bad[:5])
    more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
    message = f"no {dataset} partition of this chunk was ingested: {names}{more}"
    retryable = [o for o in bad if o.get("retryable")]
    if not retryable:
        raise ChunkFailed(message)
    if all(_not_there(o) for o in retryable):
        raise NotFoundError(message)
    raise TransientSourceError(message)


def _not_there(outcome: dict[str, Any]) -> bool:
    return outcome.get("error_type", "").rsplit(".", 1)[-1] in {"SourceNotFound", "NotFoundError"}


def still_waiting(outcomes: list[dict[str, Any]]) -> bool:
    """A scheduled run's partition whose data has not arrived yet: every partition's outcome is
    "not there" (the run looks again later instead of failing)."""
    return bool(outcomes) and all(o.get("error") and _not_there(o) for o in outcomes)


def verdict_message(dataset: str, planned: list[str], outcomes: list[dict[str, Any]]) -> str:
    """Why the run fails ("" when every planned partition was ingested): the partitions that
    were not, each with its error; the others were published."""
    done = {o["key"] for o in outcomes if not o.get("error")}
    bad = {o["key"]: o["error"] for o in failures(outcomes)}
    missing = [k for k in planned if k not in done]
    if not missing:
        return ""
    detail = "; ".join(f"{k}: {bad.get(k, 'its chunk failed (see its task)')}" for k in missing)
    return (
        f"{len(missing)} of {len(planned)} {dataset} partition(s) were not ingested: "
        f"{detail[:3000]}; the other partitions were published"
    )
