"""What the DAG files share: their assets (URIs and names from `ml.assets`), DAG defaults, and
the edge that turns Airflow's shapes (asset events, task instance) into plain arguments.

Not a DAG file (`.airflowignore`); the DAG processor puts `dags/` on `sys.path`, so DAG files
import it as `_mlpipe`. Imports nothing heavy: it is read on every parse.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, BaseNotifier, ExceptionRetryPolicy, RetryAction, RetryRule

from ml import assets
from ml.contracts import Contract, available_datasets, load_contract
from ml.errors import KINDS as ERRORS

# Every DAG starts on the first day of the reference data and never catches up by itself.
DAG_DEFAULTS: dict[str, Any] = {
    "start_date": pendulum.datetime(2013, 1, 1, tz="UTC"),
    "catchup": False,
}


def schedule_bounds(schedule) -> tuple[Any, Any]:
    """The first and last ticks of a contract's `schedule` (`ml.contract_schedule.Schedule`):
    the ticks whose partitions are `start` and `end` (None: no end), as the DAG's `start_date`
    and `end_date`. A tick ingests the partition `partition_lag` ticks before it."""
    from croniter import croniter

    def tick_of(day):
        midnight = pendulum.datetime(day.year, day.month, day.day, tz=schedule.timezone)
        ticks = croniter(schedule.cron, midnight.subtract(seconds=1))
        tick = ticks.get_next(pendulum.DateTime)
        for _ in range(schedule.partition_lag):
            tick = ticks.get_next(pendulum.DateTime)
        return pendulum.instance(tick)

    return tick_of(schedule.start), tick_of(schedule.end) if schedule.end else None


def zone_asset(zone: str, dataset: str) -> Asset:
    uri, name = assets.zone(zone, dataset)
    return Asset(uri=uri, name=name)


def alias_asset(model_name: str, alias: str) -> Asset:
    uri, name = assets.model_alias(model_name, alias)
    return Asset(uri=uri, name=name)


def contracts() -> Iterator[tuple[str, Contract]]:
    """Every dataset that has a contract, with its contract."""
    for dataset in available_datasets():
        yield dataset, load_contract(dataset)


def trained_contracts() -> Iterator[tuple[str, Contract]]:
    """The datasets whose contract trains a model (features and a target)."""
    for dataset, contract in contracts():
        if contract.features and contract.target:
            yield dataset, contract


def event_extras(triggering_asset_events: Any) -> list[dict[str, Any]]:
    """The `extra` of every asset event that started this run, oldest first."""
    return [e.extra for events in (triggering_asset_events or {}).values() for e in events]


def event_batches(triggering_asset_events: Any) -> list[str]:
    """The batch references the events that started this run name (`extra["batches"]`), each
    once, in order: events raised while the DAG was busy or paused arrive together."""
    refs = (r for extra in event_extras(triggering_asset_events) for r in extra.get("batches", []))
    return sorted(set(refs))


def triggering_user(dag_run: Any) -> str:
    """Who started the run in Airflow (its UI or REST API user; empty for a scheduled or
    asset-triggered run): what audit records name, not a free-text field."""
    return str(getattr(dag_run, "triggering_user_name", None) or "")


def task_key_parts(ti: Any) -> dict[str, Any]:
    """What identifies a task instance across its attempts (ml/ derives the run key from it)."""
    return {
        "dag_id": ti.dag_id,
        "run_id": ti.run_id,
        "task_id": ti.task_id,
        "map_index": ti.map_index if ti.map_index is not None else -1,
        "try_number": ti.try_number,  # not part of the key: tagged on the run per attempt
    }


# --- per-stage S3 identities ---------------------------------------------------------------------

S3_CONNECTION = "mlpipe_s3_{}"  # an `aws` connection per stage (login/password = S3 keys)
# The MLflow user of a stage that writes to MLflow (`ml.tracking.WRITER_STAGES`): login/password.
MLFLOW_CONNECTION = "mlpipe_mlflow_{}"


def _login(conn_id: str):
    """(login, password) of the Airflow connection `conn_id`, or None when it is not configured
    or has no login."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:
        return None
    if not conn.login or not conn.password:
        return None
    return conn.login, conn.password


def s3_identity(name: str):
    """The S3 identity of connection `mlpipe_s3_<name>`, or None when it is not configured
    (then the settings' keys apply, as without per-stage identities)."""
    from ml.identity import S3Identity

    login = _login(S3_CONNECTION.format(name))
    return S3Identity(name, *login) if login else None


def mlflow_env(stage: str) -> dict[str, str]:
    """The MLflow credentials of `stage` (connection `mlpipe_mlflow_<stage>`) as environment;
    empty for a stage that only reads, or without the connection (the process's own user)."""
    from ml.tracking import WRITER_STAGES, credentials_env

    if stage not in WRITER_STAGES:
        return {}
    login = _login(MLFLOW_CONNECTION.format(stage))
    return credentials_env(*login) if login else {}


def as_stage(stage: str):
    """Run a task body with the S3 identity of `stage` (and Dask work with the `dask` one), and
    MLflow requests as the stage's MLflow user."""
    import functools

    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            from ml.identity import use_identity
            from ml.tracking import environ

            with (
                use_identity(s3_identity(stage), dask=s3_identity("dask")),
                environ(mlflow_env(stage)),
            ):
                return fn(*args, **kwargs)

        return run

    return wrap


# Retries by failure kind (issue 13, item 7). A rule names exceptions by dotted path: Airflow
# imports them at parse time, so only light modules (ml.errors, builtins) are named here; any
# error not named (S3 5xx, a lost Dask worker, a task time-out) takes the task's standard
# retries, with exponential backoff.
NEVER_RETRY = [
    ERRORS["BadInputError"],
    ERRORS["ContractViolationError"],
    ERRORS["ConfigurationError"],
    ERRORS["RefusedError"],
    "builtins.PermissionError",  # S3 403: wrong keys or policy, a retry gets the same answer
]
RETRY_WITH_BACKOFF = [ERRORS["TransientError"], "builtins.ConnectionError", "builtins.TimeoutError"]


def retry_policy(*first: RetryRule) -> ExceptionRetryPolicy:
    """The stages' retry policy: `first` (a stage's own rules), then bad input, contract
    violations, configuration and refusals fail at once; transient infrastructure errors and
    anything unknown retry with exponential backoff (the task's `retry_delay`, doubled per try)."""
    return ExceptionRetryPolicy(
        rules=[
            *first,
            RetryRule(
                exception=list(NEVER_RETRY),
                action=RetryAction.FAIL,
                reason="bad input, a contract violation, a configuration error or a refusal: "
                "a retry would meet the same; fix it, then re-run",
            ),
            RetryRule(
                exception=list(RETRY_WITH_BACKOFF),
                action=RetryAction.DEFAULT,
                reason="transient infrastructure error: retried with exponential backoff",
            ),
        ],
    )


RETRY_POLICY = retry_policy()
# A run's verdict (the partitions or batches that did not go through) reads the same outcomes on
# a retry: it fails at once; storage errors while it reads retry as anywhere else.
VERDICT_POLICY = retry_policy(
    RetryRule(
        exception="builtins.RuntimeError",
        action=RetryAction.FAIL,
        reason="the run's verdict on outcomes already recorded: a retry gives the same",
    )
)


@dataclass(frozen=True)
class TaskKind:
    """How one kind of task retries and how long one try may run."""

    retries: int
    timeout: timedelta  # execution_timeout of one try
    first_delay: timedelta  # doubled after each try ...
    max_delay: timedelta = timedelta(minutes=10)  # ... up to this


# One table for every task of every DAG (issue 13, items 5 and 7).
TASK_KINDS: dict[str, TaskKind] = {
    "plan": TaskKind(2, timedelta(minutes=5), timedelta(seconds=10)),  # small reads, XCom only
    "ingest": TaskKind(3, timedelta(minutes=30), timedelta(seconds=15)),
    "publish": TaskKind(2, timedelta(minutes=5), timedelta(seconds=10)),
    "validate": TaskKind(3, timedelta(hours=1), timedelta(seconds=15)),
    "features": TaskKind(2, timedelta(hours=3), timedelta(seconds=30)),
    "train": TaskKind(2, timedelta(hours=6), timedelta(seconds=30)),
    "promote": TaskKind(2, timedelta(minutes=30), timedelta(seconds=30)),
    "score": TaskKind(2, timedelta(hours=2), timedelta(seconds=30)),
}
# A run that outlives this is failed by the scheduler (no run waits forever on a stuck task).
DAG_TIMEOUTS: dict[str, timedelta] = {
    "ingest": timedelta(hours=6),
    "validate": timedelta(hours=6),
    "preprocess": timedelta(hours=6),
    "train": timedelta(hours=12),
    "promote": timedelta(hours=1),
    "batch_score": timedelta(hours=6),
    "rollback": timedelta(hours=1),
    "quarantine": timedelta(hours=2),
}
# How long a promotion waits for a person (`model.approval: required`); then it is rejected.
APPROVAL_TIMEOUT = timedelta(days=3)


def task_args(kind: str, policy: ExceptionRetryPolicy | None = None, **overrides: Any) -> dict:
    """The `@task(...)` arguments of a task of this kind: retries by failure kind with
    exponential backoff, and the execution timeout of one try."""
    k = TASK_KINDS[kind]
    return {
        "retries": k.retries,
        "retry_delay": k.first_delay,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": k.max_delay,
        "execution_timeout": k.timeout,
        "retry_policy": policy or RETRY_POLICY,
        **overrides,
    }


# What each kind of DAG does, in the words of its display name ("flights: validate batches").
DAG_TITLES: dict[str, str] = {
    "ingest": "ingest raw batches",
    "validate": "validate batches",
    "preprocess": "build features",
    "train": "train a model",
    "promote": "promote the champion",
    "batch_score": "score with the champion",
    "rollback": "roll the champion back",
    "quarantine": "release or drop held batches",
}


class FailureAlert(BaseNotifier):
    """Tells people that a task failed for good (after its retries), or that a run failed for
    another reason than a failed task (its `dagrun_timeout`): `ml.alerts`, to the webhook and/or
    mail of the settings. Airflow calls it as `on_failure_callback`."""

    template_fields = ()

    def notify(self, context: dict[str, Any]) -> None:
        from ml import alerts

        ti, run = context.get("ti") or context.get("task_instance"), context.get("dag_run")
        reason = context.get("reason")
        if ti is None and reason == "task_failure":
            return  # the failed task has alerted already
        dag_id = getattr(run, "dag_id", None) or getattr(ti, "dag_id", "?")
        run_id = getattr(run, "run_id", None) or getattr(ti, "run_id", "?")
        fields: dict[str, Any] = {"dag_id": dag_id, "run_id": run_id}
        if ti is not None:
            map_index = ti.map_index if ti.map_index is not None else -1
            fields |= {"task_id": ti.task_id, "map_index": map_index, "try": ti.try_number}
            fields["url"] = alerts.airflow_url(dag_id, run_id, ti.task_id, map_index)
            title = f"{dag_id}.{ti.task_id} failed"
        else:
            fields["url"] = alerts.airflow_url(dag_id, run_id)
            title = f"run {run_id} of {dag_id} failed ({reason or 'see the run'})"
        error = context.get("exception")
        text = f"{type(error).__name__}: {error}" if error else str(reason or "")
        alerts.send(alerts.Alert(title, text[:4000], fields))


def dag_args(kind: str, dataset: str, owner: str | None = None) -> dict[str, Any]:
    """The `@dag(...)` arguments of the `kind` DAG of `dataset`: defaults, the run timeout, a
    display name people read, the contract's `owner` (with a mail link when it is an address;
    read from the contract when not given) as the owner of every task, and alerts
    (`FailureAlert`) when a task or the run fails."""
    owner = owner or load_contract(dataset).owner
    return {
        **DAG_DEFAULTS,
        "dagrun_timeout": DAG_TIMEOUTS[kind],
        "dag_display_name": f"{dataset}: {DAG_TITLES[kind]}",
        "default_args": {"owner": owner, "on_failure_callback": [FailureAlert()]},
        "on_failure_callback": [FailureAlert()],
        "owner_links": {owner: f"mailto:{owner}"} if "@" in owner else {},
    }
