"""MLflow, in one place: the tracking server from settings, clients, runs and tags.

Every module that talks to MLflow gets its client here, so the server, credentials and client
options are set once. `mlflow` is imported inside the functions: it costs seconds and most
callers (DAG parsing, the CLI's other commands) never need it.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml.errors import RefusedError
from ml.settings import Settings, get_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# The stages with an MLflow user of their own (the Airflow connection `mlpipe_mlflow_<stage>`,
# read by dags/_mlpipe.py): `train` creates experiments, runs, models and versions (and manages
# what it created); `promote` moves aliases and tags versions (MANAGE on registered models, by
# the role infra/mlflow/create_users.py gives it). Every other stage, and the Dask workers, act as
# their processes' own user: the reader.
WRITER_STAGES = ("train", "promote")
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """`env` set in this process's environment for the block, the previous values back after.

    How MLflow credentials change for a block (`credentials_env`): MLflow reads
    MLFLOW_TRACKING_USERNAME / _PASSWORD from the environment on every request, and child
    processes (torchrun's workers) inherit them. Process-wide: an Airflow task runs in a process
    of its own, so nothing reaches another task."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def credentials_env(username: str | None, password: str | None) -> dict[str, str]:
    """The environment that makes MLflow requests as `username` (empty when None)."""
    if not username or password is None:
        return {}
    return dict(zip(CREDENTIAL_VARS, (username, password), strict=True))


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


class _LogWriter:
    """A text stream whose lines go to a logger at INFO (see `stderr_as_log`)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger, self.pending = logger, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.logger.info("%s", line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self.pending.strip():
            self.logger.info("%s", self.pending.rstrip())
        self.pending = ""


@contextmanager
def stderr_as_log(logger: logging.Logger | None = None) -> Iterator[None]:
    """What MLflow prints to stderr inside the block ("Successfully registered model ...",
    "Created version ...") goes to `logger` at INFO: Airflow shows a task's stderr as ERROR."""
    import contextlib

    writer = _LogWriter(logger or log)
    try:
        with contextlib.redirect_stderr(writer):
            yield
    finally:
        writer.flush()


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


# A registered model is MLflow models-from-code (`ml.training.package`): its MLmodel names this
# loader and this entry file, and nothing else of it is code mlpipe runs.
CODE_MODEL_LOADER = "mlflow.pyfunc.loaders.code_model"
MODEL_ENTRY_FILE = "model_code.py"
MODEL_ENTRY_MODULE = "ml.training.model_code"


def load_model(model_uri: str, tracking_uri: str | None = None) -> Any:
    """A registered model as a pyfunc, loaded so that nothing of it is unpickled and no code of
    it runs: only mlpipe's installed code, over the model's JSON and plain-array files.

    The model is downloaded to a temporary folder and checked first (`check_model_dir`): a model
    that is not models-from-code with mlpipe's own entry file is refused. Its shipped copy of
    the code (`code/`) is removed there: this process imports the installed `ml`. The model's
    code path is on `sys.path` only while it loads (`sys_path_kept`).
    """
    import mlflow.artifacts
    import mlflow.pyfunc

    use_server(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="mlpipe-model-") as tmp, sys_path_kept():
        local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp))
        check_model_dir(local, model_uri)
        shutil.rmtree(local / "code", ignore_errors=True)
        return mlflow.pyfunc.load_model(str(local))


def check_model_dir(local: Path, model_uri: str) -> None:
    """Refuse (`RefusedError`) a downloaded model that would make a loader unpickle or run code
    that is not mlpipe's: its MLmodel must name the models-from-code loader and entry file, no
    pickled `python_model`, no other data and no code folder but `code/` (which `load_model`
    removes before MLflow puts it on `sys.path`); the entry file must be mlpipe's (compared as code,
    docstring aside); its artifacts must lie in its `artifacts/` folder."""
    from mlflow.models import Model

    def refuse(rule: str) -> RefusedError:
        return RefusedError(f"model {model_uri}: {rule}; it is not loaded (tampered or foreign?)")

    try:
        conf = Model.load(str(local / "MLmodel")).flavors.get("python_function") or {}
    except Exception as exc:  # an unreadable MLmodel is refused like a wrong one
        raise refuse(f"its MLmodel cannot be read ({exc})") from None
    if conf.get("loader_module") != CODE_MODEL_LOADER:
        raise refuse(f"loader {conf.get('loader_module')!r} is not {CODE_MODEL_LOADER!r}")
    if Path(str(conf.get("model_code_path"))).name != MODEL_ENTRY_FILE:
        raise refuse(f"entry file {conf.get('model_code_path')!r} is not {MODEL_ENTRY_FILE!r}")
    if {"python_model", "data"} & set(conf):
        raise refuse("its MLmodel names a pickled python_model or data")
    if conf.get("code") not in (None, "code"):  # the folder MLflow puts on sys.path
        raise refuse(f"its code folder is {conf.get('code')!r}, not 'code'")
    entry = local / MODEL_ENTRY_FILE
    ours = Path(importlib.util.find_spec(MODEL_ENTRY_MODULE).origin)
    if not entry.is_file() or _code_of(entry.read_text()) != _code_of(ours.read_text()):
        raise refuse(f"its {MODEL_ENTRY_FILE} is not mlpipe's entry file ({ours})")
    folder = (local / "artifacts").resolve()
    for name, info in (conf.get("artifacts") or {}).items():
        path = (local / str(info.get("path") if isinstance(info, dict) else "")).resolve()
        if folder not in path.parents:
            raise refuse(f"artifact {name!r} lies outside its artifacts/ folder")


def _code_of(source: str) -> str:
    """A module's code as an AST dump, its docstring left out (parsing runs nothing)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return ast.dump(ast.Module(body=body, type_ignores=[]))


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
