"""MLflow, in one place: the tracking server from settings, clients, runs and tags.

Every module that talks to MLflow gets its client here, so the server, credentials and client
options are set once. `mlflow` is imported inside the functions: it costs seconds and most
callers (DAG parsing, the CLI's other commands) never need it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ml.settings import Settings, get_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


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


@contextmanager
def sys_path_kept() -> Iterator[None]:
    """Undo what MLflow adds to `sys.path` while it logs or loads a model.

    A registered model ships its own copy of part of `ml` (its `code/` folder, see
    `ml.training.package`), and MLflow puts that folder first on `sys.path`. This process has the
    library imported already, but a process it starts afterwards (a Dask worker of a
    `LocalCluster`, torchrun) inherits `sys.path` and would import the model's partial copy as
    `ml`: found by the scoring bench, whose workers failed with `cannot import name 'joins'`.
    """
    saved = list(sys.path)
    try:
        yield
    finally:
        sys.path[:] = saved


def load_model(model_uri: str, tracking_uri: str | None = None) -> Any:
    """A registered model as a pyfunc (the model's code put on `sys.path` only while it loads:
    `sys_path_kept`)."""
    import mlflow.pyfunc

    use_server(tracking_uri)
    with sys_path_kept():
        return mlflow.pyfunc.load_model(model_uri)


def find_or_create_run(
    mlflow_client: MlflowClient,
    experiment_id: str,
    tag: str,
    value: str,
    run_name: str,
    tags: dict[str, str],
) -> str:
    """The id of the run whose tag `tag` is `value` (found again on a retry), created with
    `tags` (and that tag) when there is none yet."""
    found = mlflow_client.search_runs(
        [experiment_id], filter_string=f"tags.{tag} = '{value}'", max_results=2
    )
    if found:
        log.info("continuing MLflow run %s of %s %s", found[0].info.run_id, tag, value)
        return found[0].info.run_id
    run = mlflow_client.create_run(experiment_id, run_name=run_name, tags={**tags, tag: value})
    return run.info.run_id


def logged_steps(mlflow_client: MlflowClient, run_id: str, metric: str) -> set[int]:
    """The steps at which `metric` was logged in a run (so a retry logs no step twice)."""
    return {m.step for m in mlflow_client.get_metric_history(run_id, metric)}


def log_step(
    mlflow_client: MlflowClient, run_id: str, row: dict, done: set[int], step_key: str = "epoch"
) -> None:
    """One row of metrics (e.g. an epoch's) in one `log_batch` call at step `row[step_key]`;
    a step in `done` is not logged again, and is added to `done` once logged."""
    from mlflow.entities import Metric

    step = int(row[step_key])
    if step in done:
        return
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, step) for k, v in row.items() if k != step_key]
    mlflow_client.log_batch(run_id, metrics=metrics)
    done.add(step)


def set_version_tags(
    mlflow_client: MlflowClient, model_name: str, version: str, tags: dict[str, str]
) -> None:
    """Set every tag of `tags` on a registered model version."""
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(model_name, version, key, value)
