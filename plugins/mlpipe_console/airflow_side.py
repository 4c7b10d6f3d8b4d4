"""What the console reads from and writes to Airflow itself: a task's return value (XCom), and
the champion asset event. Runs in the API server; Airflow is imported inside the functions."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def task_return_value(dag_id: str, run_id: str, task_id: str, map_index: int) -> Any:
    """The `return_value` XCom of one task instance (None when it has none)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(
                key="return_value",
                run_id=run_id,
                dag_ids=dag_id,
                task_ids=task_id,
                map_indexes=map_index,
            ).with_only_columns(XComModel.value)
        ).first()
    return None if row is None else XComModel.deserialize_value(row)


def raise_asset_event(uri: str, name: str, extra: dict[str, Any]) -> int | None:
    """Record an event of the asset (as `POST /api/v2/assets/events` does): the DAGs scheduled
    on it are queued. Returns the event id; None when Airflow knows no such asset."""
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        asset = session.scalar(
            select(AssetModel).where(AssetModel.uri == uri, AssetModel.name == name).limit(1)
        )
        if asset is None:
            log.warning("no Airflow asset %s (%s): is the DAG that uses it parsed?", uri, name)
            return None
        event = asset_manager.register_asset_change(
            asset=asset, extra=extra, source_is_api=True, session=session
        )
        return None if event is None else event.id


def stage_identity(stage: str):
    """The S3 identity of the Airflow connection `mlpipe_s3_<stage>` (as the DAGs' tasks use,
    `dags/_mlpipe.py`), or None where none is configured (the process's own keys apply)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    from ml.identity import S3Identity

    try:
        conn = Connection.get_connection_from_secrets(f"mlpipe_s3_{stage}")
    except AirflowNotFoundException:
        return None
    if not conn.login or not conn.password:
        return None
    return S3Identity(stage, conn.login, conn.password)
