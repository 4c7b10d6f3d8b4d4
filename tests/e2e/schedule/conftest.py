"""A stack whose scheduler runs `orders` by its contract's schedule, from three days ago: the
contracts folder holds only a copy of `orders.yaml` whose schedule starts then and catches up
(`MLPIPE_CONTRACTS_DIR`), so the scheduler itself creates a run per day, oldest first."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from ml import contracts
from tests.conftest import pipeline_environment
from tests.e2e.conftest import fresh_databases, stack_env

TODAY = datetime.now(UTC).date()
# Midnight ticks, each ingesting the day before: the ticks of the last three midnights
# (whatever the time of day the test runs) ingest these three days.
DAYS: list[date] = [TODAY - timedelta(days=n) for n in (3, 2, 1)]
WAIT = "45s"  # how long a day's run waits for its file; then the deadline alert
POKE_S = 3


def scheduled_contracts(folder: Path) -> Path:
    """A contracts folder: the real orders contract with a schedule from DAYS[0] (catch-up on)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (contracts.CONTRACTS_DIR / "orders.yaml").read_text()
    old = next(line for line in text.splitlines() if line.startswith("schedule:"))
    new = (
        f'schedule: {{cron: "0 0 * * *", partition_lag: 1, start: {DAYS[0].isoformat()}, '
        f"catchup: true, wait: {WAIT}}}"
    )
    (folder / "orders.yaml").write_text(text.replace(old, new))
    shutil.copytree(contracts.CONTRACTS_DIR / "outputs", folder / "outputs")
    return folder


@pytest.fixture(scope="package")
def scheduled_stack(tmp_path_factory, alert_receiver) -> Iterator:
    """The local stack on free ports with the scheduled contracts folder; `down` afterwards.
    Nothing is triggered: the scheduler starts every run."""
    from ml import settings as settings_module
    from ml.dev.stack import lifecycle

    root = tmp_path_factory.mktemp("scheduled-stack")
    env = {
        **stack_env(root / "state"),
        "MLPIPE_CONTRACTS_DIR": str(scheduled_contracts(root / "contracts")),
        "MLPIPE_ARRIVAL_POKE_S": str(POKE_S),
        "MLPIPE_ALERT_WEBHOOK_URL": alert_receiver.url,
    }
    with fresh_databases() as databases, pipeline_environment({**env, **databases}):
        s = settings_module.get_settings()
        try:
            yield s, lifecycle
        finally:
            lifecycle.down(s)
