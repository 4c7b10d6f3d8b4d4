"""The Dask cluster the pipeline computes on (its scheduler address comes from settings)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ml.errors import TransientError
from ml.settings import Settings, get_settings

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)

# Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536. Setting that variable also
# switches off glibc's dynamic mmap threshold, so every array over 128 KiB is mmapped and
# unmapped again: GX's per-expectation frame copies then fault in fresh pages each time
# (measured: 4.2 s against 2.1-3.1 s per 1M-row flights partition; bench.validation shows the
# whole-batch effect with --dask-malloc-trim). The pipeline's workers keep glibc's default, which
# still returns memory above a dynamic threshold; the workers' memory limit stays in force.
WORKER_DASK_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
# The same as an environment variable, for `dask worker` processes (stack, docker-compose).
WORKER_ENV = {"DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": '{"MALLOC_TRIM_THRESHOLD_": None}'}
# The scheduler fails a task that has had no worker to run it for this long, instead of keeping
# the computation (and its Airflow task) waiting for ever: every worker gone, or dying on each
# task it gets (a worker whose `sys.path` found another `ml` did, in a test). The task's
# retries take it from there.
SCHEDULER_ENV = {"DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT": "10 minutes"}


class ClusterUnavailable(TransientError):
    """No Dask scheduler answered at the configured address."""


@contextmanager
def dask_client(settings: Settings | None = None) -> Iterator[Client]:
    """A client on the configured scheduler, the default for Dask computations inside the block."""
    from distributed import Client

    address = (settings or get_settings()).dask_scheduler_address
    try:
        client = Client(address, timeout="30s")
    except OSError as exc:
        raise ClusterUnavailable(
            f"no Dask scheduler at {address} (DASK_SCHEDULER_ADDRESS); is the stack up? ({exc})"
        ) from exc
    log.info(
        "computing on Dask cluster %s (%s workers)",
        address,
        len(client.scheduler_info()["workers"]),
    )
    try:
        yield client
    finally:
        client.close()
