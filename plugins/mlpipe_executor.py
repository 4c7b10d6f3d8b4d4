"""The local stack's executor: Airflow's `LocalExecutor`, with the pipeline's heavy third-party
libraries imported once in the scheduler before its workers fork.

Why: on Linux a LocalExecutor worker is forked from the scheduler, and each task is forked again
from its worker (`airflow.sdk.execution_time.supervisor`), so every task inherits what the
scheduler had imported. Without this, every task imports great_expectations, pandas, pyarrow,
s3fs, mlflow, dask and torch itself: about 10 s of CPU, on tasks whose work is often
milliseconds (one small day's batch). Third-party libraries only: our own `ml` code is imported
by each task, so an edited module is picked up by the next task, as before.

`AIRFLOW__CORE__EXECUTOR=mlpipe_executor.PreloadingLocalExecutor` (the local stack sets it;
`plugins/` is on the path of every Airflow process). `MLPIPE_PRELOAD_MODULES` (comma-separated)
replaces the list; empty turns preloading off. A module that fails to import is logged and
skipped: the task that needs it fails with its own error, as it would have.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import time

from airflow.executors.local_executor import LocalExecutor

log = logging.getLogger(__name__)

PRELOAD_MODULES = (
    "pandas",
    "pyarrow.parquet",
    "s3fs",
    "great_expectations",
    "dask.distributed",
    "mlflow",
    "torch",
)


def preload_modules() -> tuple[str, ...]:
    """The modules to import before the workers fork (`MLPIPE_PRELOAD_MODULES` or the default)."""
    configured = os.environ.get("MLPIPE_PRELOAD_MODULES")
    if configured is None:
        return PRELOAD_MODULES
    return tuple(m.strip() for m in configured.split(",") if m.strip())


def preload(modules: tuple[str, ...]) -> list[str]:
    """Import `modules`; return those that imported."""
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the task that needs it reports its own error
            log.warning("not preloaded: %s (%s: %s)", name, type(exc).__name__, exc)
        else:
            loaded.append(name)
    return loaded


class PreloadingLocalExecutor(LocalExecutor):
    """A `LocalExecutor` whose forked workers (and their tasks) start with `preload_modules()`
    imported. Where workers are spawned, not forked, there is nothing to inherit: it says so and
    runs as a plain `LocalExecutor`."""

    def start(self) -> None:
        if multiprocessing.get_start_method() != "fork":
            log.warning("workers are not forked here: nothing is preloaded")
        else:
            started = time.monotonic()
            loaded = preload(preload_modules())
            log.info("preloaded %s in %.1f s", ", ".join(loaded), time.monotonic() - started)
        super().start()
