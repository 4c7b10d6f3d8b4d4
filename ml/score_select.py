"""What a batch-scoring run scores: the champion resolved once, and the partitions that version
has not scored yet (`plan_run`). `ml.score` does the scoring.

A partition run (one validated partition key, `score_partitions_<dataset>`) lists only the
partitions that started it, so a year's backfill costs a listing per day, not the whole history
per day.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ml import contracts, storage
from ml import partitions as partition_names
from ml.model_versions import CHAMPION, ModelVersionNotFoundError, alias_version
from ml.scoring_plan import ScoringPlan

log = logging.getLogger(__name__)


def resolve_champion(dataset: str, model_name: str | None = None) -> str:
    """The champion's version, resolved once: every partition of a run is scored with it."""
    model_name = model_name or contracts.load_contract(dataset).model_name
    version = alias_version(model_name, CHAMPION)
    if version is None:
        raise ModelVersionNotFoundError(
            f"model {model_name!r} has no {CHAMPION!r} alias: nothing to score with"
        )
    return version


def scored_by(
    dataset: str, model_name: str, version: str, partitions: Iterable[str] | None = None
) -> set[str]:
    """Validated batch refs that committed predictions of this model version were made from
    (of the named `partitions` only, when given)."""
    done: set[str] = set()
    for m in storage.list_batches("predictions", dataset, partitions):
        extra = m.extra
        if extra.get("model_name") == model_name and str(extra.get("model_version")) == version:
            # The scored day's own batches: a lag's earlier day is upstream too, not scored.
            done.update(r for r in m.upstream if storage.parse_ref(r)[2] == m.partition)
    return done


def pending_partitions(
    dataset: str,
    version: str,
    limit: int | None = None,
    model_name: str | None = None,
    partitions: Iterable[str] | None = None,
) -> list[str]:
    """Partitions (of the named `partitions` only, when given) whose newest validated batch
    this model version has not scored yet; the newest `limit` of them."""
    model_name = model_name or contracts.load_contract(dataset).model_name
    names = None if partitions is None else sorted(set(partitions))
    done = scored_by(dataset, model_name, str(version), names)
    latest = storage.latest_batches("validated", dataset, partitions=names)
    pending = sorted(p for p, m in latest.items() if m.ref not in done)
    return pending[-limit:] if limit else pending


def partition_of_key(dataset: str, key: str) -> str:
    """The name of the dataset's partition `key` by its contract's granularity (`2013-01-05` ->
    `date=2013-01-05`); a partition name is taken as it is."""
    granularity = partition_names.granularity_of(contracts.load_contract(dataset).partition)
    return partition_names.name(key, granularity)


def newest_partition(dataset: str) -> str:
    batches = storage.latest_batches("validated", dataset)
    if not batches:
        raise storage.BatchNotFoundError(f"no validated {dataset} batch to score")
    return max(batches)


def plan_run(
    dataset: str,
    score_date: str | None = None,
    *,
    alias_moved: bool = False,
    max_days: int | None = None,
    model_name: str | None = None,
    batches: Iterable[str] | None = None,
) -> ScoringPlan:
    """A scoring run's plan: the champion resolved once, and the partitions to score.

    A given day is scored as asked; an alias move scores the newest validated day; a run
    started by validated `batches` (a partition run) scores their partitions, those the
    champion has not scored yet; the daily run scores the days whose newest validated batch
    the champion has not scored yet.
    """
    model_name = model_name or contracts.load_contract(dataset).model_name
    try:
        version = resolve_champion(dataset, model_name)  # the one alias read of the run
    except ModelVersionNotFoundError:
        if alias_moved or score_date:
            raise
        log.info("no %s champion yet: the daily run has nothing to score", model_name)
        return ScoringPlan(model_name, None)
    if score_date:
        partitions = [partition_of_key(dataset, score_date)]
    elif alias_moved:
        partitions = [newest_partition(dataset)]
    elif batches is not None:  # the new validated partitions, each scored once by a version
        named = {storage.parse_ref(ref)[2] for ref in batches}
        partitions = pending_partitions(dataset, version, None, model_name, named)
    else:
        partitions = pending_partitions(dataset, version, max_days, model_name)
    log.info(
        "scoring plan for %s: %s v%s over %s",
        dataset,
        model_name,
        version,
        partitions or "nothing new",
    )
    return ScoringPlan(model_name, version, tuple(partitions))
