"""A stack whose scheduler runs `orders` by its contract's schedule, from three days ago, with a
model of it: the contracts folder holds only a copy of `orders.yaml` whose schedule starts then
and catches up, and which onboards a model (will an order be returned?) retrained weekly over
four weeks (`MLPIPE_CONTRACTS_DIR`). Before Airflow starts, the team's first model is trained on
an earlier fortnight of orders and promoted (the library's own stages, on the stack's S3, Dask
and MLflow servers): the champion the days are scored with. Then Airflow starts and the
scheduler itself creates a run per day, oldest first."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from ml import contracts
from tests.conftest import pipeline_environment
from tests.e2e.conftest import fresh_databases, stack_env
from tests.orders_data import drop_orders

TODAY = datetime.now(UTC).date()
# Midnight ticks, each ingesting the day before: the ticks of the last three midnights
# (whatever the time of day the test runs) ingest these three days.
DAYS: list[date] = [TODAY - timedelta(days=n) for n in (3, 2, 1)]
# The week before them: backfilled from the REST API once the stack is up.
BACKFILL: list[date] = [DAYS[0] - timedelta(days=n) for n in range(7, 0, -1)]
# The fortnight before that: the first model's training data.
HISTORY: list[date] = [BACKFILL[0] - timedelta(days=n) for n in range(14, 0, -1)]
WAIT = "30s"  # how long a day's run waits for its file; then the deadline alert
POKE_S = 3
MODEL = "orders_returns"

# What the stack's copy of orders adds to the real contract: a model, and its retraining policy.
MODEL_SECTIONS = f"""
# Added by the days-go-by stack: will an order be returned? Retrained every week (Mondays) over
# the last four weeks, never on a new day: the days are scored with the champion.
features:
  row_keys: [order_id, customer_id, created_at]
  numeric: [items, amount, discount]
  categorical: [country, currency, channel]
target: {{name: will_return, kind: binary, source_column: returned, positive: [true]}}
split:
  by: created_at
  fractions: {{train: 0.6, validation: 0.2, test: 0.2}}
model:
  name: {MODEL}
  metric: roc_auc
  retrain: {{every: 7d, window: 28d}}
"""


def scheduled_contracts(folder: Path) -> Path:
    """A contracts folder: the real orders contract with a schedule from DAYS[0] (catch-up on)
    and a model."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (contracts.CONTRACTS_DIR / "orders.yaml").read_text()
    old = next(line for line in text.splitlines() if line.startswith("schedule:"))
    new = (
        f'schedule: {{cron: "0 0 * * *", partition_lag: 1, start: {DAYS[0].isoformat()}, '
        f"catchup: true, wait: {WAIT}}}"
    )
    (folder / "orders.yaml").write_text(text.replace(old, new) + MODEL_SECTIONS)
    shutil.copytree(contracts.CONTRACTS_DIR / "outputs", folder / "outputs")
    return folder


@dataclass(frozen=True)
class ScheduledStack:
    settings: object
    lifecycle: object
    champion: str  # the version the team promoted before Airflow started


def first_champion(drop_path: Path) -> str:
    """The team's first model: HISTORY dropped, ingested, validated, featurised, trained and
    promoted with the pipeline's own stages (no Airflow yet); its version."""
    from ml import ingest, registry
    from ml.features import build
    from ml.training.run import train
    from ml.validation.batch import validate_batch

    for day in HISTORY:
        drop_orders(drop_path, day)
        validate_batch(ingest.ingest_partition("orders", day.isoformat()).ref, "orders")
    features = build.build_features("orders")
    model = train(features.ref, {"epochs": 3})
    decision = registry.promote(model.model_name, model.version, model.eval_snapshot)
    assert decision.promoted, decision.reason
    return str(model.version)


@pytest.fixture(scope="package")
def scheduled_stack(tmp_path_factory, alert_receiver) -> Iterator[ScheduledStack]:
    """The local stack on free ports with the scheduled contracts folder and a first champion;
    `down` afterwards. The first day's file is there when Airflow starts; nothing is
    triggered: the scheduler starts every run."""
    from ml import settings as settings_module
    from ml.dev.stack import lifecycle

    root = tmp_path_factory.mktemp("scheduled-stack")
    folder = scheduled_contracts(root / "contracts")
    env = {
        **stack_env(root / "state"),
        "MLPIPE_CONTRACTS_DIR": str(folder),
        "MLPIPE_ARRIVAL_POKE_S": str(POKE_S),
        "MLPIPE_ALERT_WEBHOOK_URL": alert_receiver.url,
    }
    with (
        fresh_databases() as databases,
        pipeline_environment({**env, **databases}),
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setattr(contracts, "CONTRACTS_DIR", folder)  # this process read the variable before
        s = settings_module.get_settings()
        try:
            lifecycle.up(s, services=["s3", "mlflow", "dask"], timeout=300)
            champion = first_champion(s.drop_path)
            drop_orders(s.drop_path, DAYS[0])  # the first day's export is there already
            lifecycle.up(s, timeout=300)
            yield ScheduledStack(s, lifecycle, champion)
        finally:
            lifecycle.down(s)
