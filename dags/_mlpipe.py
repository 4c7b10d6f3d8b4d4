"""What the DAG files share: their assets (URIs and names from `ml.assets`), DAG defaults, and
the edge that turns Airflow's shapes (asset events, task instance) into plain arguments.

Not a DAG file (`.airflowignore`); the DAG processor puts `dags/` on `sys.path`, so DAG files
import it as `_mlpipe`. Imports nothing heavy: it is read on every parse.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pendulum
from airflow.sdk import Asset

from ml import assets
from ml.contracts import Contract, available_datasets, load_contract

# Every DAG starts on the first day of the reference data and never catches up by itself.
DAG_DEFAULTS: dict[str, Any] = {
    "start_date": pendulum.datetime(2013, 1, 1, tz="UTC"),
    "catchup": False,
}


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


def task_key_parts(ti: Any) -> dict[str, Any]:
    """What identifies a task instance across its attempts (ml/ derives the run key from it)."""
    return {
        "dag_id": ti.dag_id,
        "run_id": ti.run_id,
        "task_id": ti.task_id,
        "map_index": ti.map_index if ti.map_index is not None else -1,
    }


# --- per-stage S3 identities ---------------------------------------------------------------------

S3_CONNECTION = "mlpipe_s3_{}"  # an `aws` connection per stage (login/password = S3 keys)


def s3_identity(name: str):
    """The S3 identity of connection `mlpipe_s3_<name>`, or None when it is not configured
    (then the settings' keys apply, as without per-stage identities)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    from ml.identity import S3Identity

    try:
        conn = Connection.get(S3_CONNECTION.format(name))
    except AirflowNotFoundException:
        return None
    if not conn.login or not conn.password:
        return None
    return S3Identity(name, conn.login, conn.password)


def as_stage(stage: str):
    """Run a task body with the S3 identity of `stage` (and Dask work with the `dask` one)."""
    import functools

    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            from ml.identity import use_identity

            with use_identity(s3_identity(stage), dask=s3_identity("dask")):
                return fn(*args, **kwargs)

        return run

    return wrap
