"""The secure local stack, shared by the modules of this package (the chain under per-stage
identities, the browser test), and the two chains they look at, run at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from ml.dev.stack import auth
from tests.conftest import free_port, pipeline_environment
from tests.e2e.conftest import fresh_databases


@pytest.fixture(scope="package")
def secure_stack(tmp_path_factory) -> Iterator:
    """`mlpipe stack up` with MLPIPE_SECURE=true on free ports; `down` afterwards."""
    from ml import settings as settings_module
    from ml.dev.stack import lifecycle

    env = {
        "MLPIPE_SECURE": "true",
        "MLPIPE_STATE_DIR": str(tmp_path_factory.mktemp("secure-stack")),
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "DASK_SCHEDULER_ADDRESS": f"tcp://127.0.0.1:{free_port()}",
        "MLPIPE_AIRFLOW_API_URL": f"http://127.0.0.1:{free_port()}",
        # The process's own keys: a user with no policy in secure mode (nothing escapes its
        # stage identity unnoticed); secrets are long enough for the secure checks.
        "AWS_ACCESS_KEY_ID": "e2e-secure-nobody",
        "AWS_SECRET_ACCESS_KEY": f"e2e-{uuid.uuid4().hex}",
        "MLPIPE_AIRFLOW_PARALLELISM": "4",
        # The DAG files do not change during a test run: no re-parsing every 30 s (CPU).
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
    }
    with fresh_databases() as databases, pipeline_environment({**env, **databases}):
        s = settings_module.get_settings()
        try:
            lifecycle.up(s, timeout=300)
            with pipeline_environment(auth.client_env(s)):
                yield s
        finally:
            lifecycle.down(s)


# The chain run on the secure stack, by dataset: approve its promotion (its contract asks).
# One chain: the browser test's model, whose promotions wait for a person. The stages' code
# under their identities with joins and lookups (flights) is proven against an IAM-enforcing
# S3 server in tests/integration/test_policies.py; a second chain here cost ~1.5 min of a
# CPU-bound suite and proved the same task-to-identity binding again.
CHAINS = {"flights_delay_class": True}
DATASET = "flights_delay_class"
DATE_FROM, DATE_TO = "2013-01-01", "2013-01-04"


@pytest.fixture(scope="package")
def chains(secure_stack) -> dict[str, dict[str, dict]]:
    """The chain through the REST API: runs by dataset."""
    from ml.dev import demo

    return demo.run_chains(
        lambda: auth.airflow_client(secure_stack), CHAINS, DATE_FROM, DATE_TO, timeout=900
    )
