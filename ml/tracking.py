"""MLflow, in one place: the tracking server from settings, clients, runs and tags.

Every module that talks to MLflow gets its client here, so the server, credentials and client
options are set once. `mlflow` is imported inside the functions: it costs seconds and most
callers (DAG parsing, the CLI's other commands) never need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml.settings import Settings, get_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient


def use_server(tracking_uri: str | None = None, settings: Settings | None = None) -> str:
    """Point this process's `mlflow` at the tracking server (default: from settings)."""
    import mlflow

    uri = tracking_uri or (settings or get_settings()).mlflow_tracking_uri
    mlflow.set_tracking_uri(uri)
    return uri


def client(tracking_uri: str | None = None, settings: Settings | None = None) -> MlflowClient:
    """A client of the tracking server and registry (default: from settings)."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=use_server(tracking_uri, settings))
