"""Ingestion: the rows of one partition from a dataset's source into the `raw` zone as a batch."""

from __future__ import annotations

import logging
from datetime import date, timedelta

from ml import contracts, sources, storage

log = logging.getLogger(__name__)


def partition_name(day: date) -> str:
    return f"date={day.isoformat()}"


def days_between(date_from: str, date_to: str | None = None, max_days: int = 366) -> list[str]:
    """Every day from `date_from` to `date_to` inclusive, as ISO dates."""
    first = date.fromisoformat(date_from)
    last = date.fromisoformat(date_to) if date_to else first
    if last < first:
        raise ValueError(f"date range: date_to {last} is before date_from {first}")
    span = (last - first).days + 1
    if span > max_days:
        raise ValueError(
            f"date range {first}..{last} spans {span} days; at most {max_days} per run"
        )
    return [(first + timedelta(days=i)).isoformat() for i in range(span)]


def ingest_partition(dataset: str, day: date | str) -> dict:
    """Ingest `day` of `dataset` into `raw`; return the batch reference and row count.

    Idempotent: when the newest committed batch of the partition already holds the same
    content, it is returned and nothing is written.
    """
    day = date.fromisoformat(day) if isinstance(day, str) else day
    contract = contracts.load_contract(dataset)
    df, source = sources.read_source(contract.source, day)
    if df.empty:
        raise sources.SourceError(f"{source}: no rows for {dataset} on {day.isoformat()}")
    partition = partition_name(day)
    digest = storage.content_hash(df)
    existing = storage.list_batches("raw", dataset, partition)
    if existing and existing[-1].content_hash == digest:
        log.info(
            "%s %s unchanged since batch %s: nothing to ingest",
            dataset,
            partition,
            existing[-1].ref,
        )
        return {"ref": existing[-1].ref, "rows": existing[-1].rows, "new": False}
    manifest = storage.write_batch(
        df,
        "raw",
        dataset,
        partition,
        source=source,
        contract_hash=contract.hash,
        extra={"supersedes": existing[-1].ref} if existing else None,
    )
    return {"ref": manifest.ref, "rows": manifest.rows, "new": True}
