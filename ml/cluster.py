"""The Dask cluster the pipeline computes on (its scheduler address comes from settings)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ml.settings import Settings, get_settings

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


@contextmanager
def dask_client(settings: Settings | None = None) -> Iterator[Client]:
    """A client on the configured scheduler, the default for Dask computations inside the block."""
    from distributed import Client

    address = (settings or get_settings()).dask_scheduler_address
    try:
        client = Client(address, timeout="30s")
    except OSError as exc:
        raise ConnectionError(
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
