"""The retraining policy (`model.retrain`): parsed and checked on load (refused with
`file:line: model.retrain.<key>: message`), its default, its cron, and the window of validated
days it gives a run (ending at the newest validated day, never the clock)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ml import contracts
from ml.errors import NotFoundError
from ml.retrain_policy import RetrainPolicy, partition_last_day, policy_of

pytestmark = pytest.mark.unit

BASE = """dataset: shop
owner: team@example.org
columns:
  amount: {type: float, nullable: true, min: -5, max: 100}
  segment: {type: string}
features:
  numeric: [amount]
  categorical: [segment]
target:
  source_column: amount
  threshold: 15
model:
  name: shop_model
  metric: roc_auc
"""
DAY = timedelta(days=1)
RETRAIN_LINE = 15  # the line of `retrain:` when appended to BASE


def load(tmp_path, retrain: str | None):
    path = tmp_path / "shop.yaml"
    path.write_text(BASE + (f"  retrain: {retrain}\n" if retrain is not None else ""))
    return contracts.load_contract(path), path


@pytest.mark.parametrize(
    "retrain, want",
    [
        (None, RetrainPolicy("each_batch", None, None)),
        ("{}", RetrainPolicy("each_batch", None, None)),
        ("{every: each_batch}", RetrainPolicy("each_batch", None, None)),
        ("{every: on_drift}", RetrainPolicy("on_drift", None, None)),
        ("{every: 7d, window: 90d}", RetrainPolicy("interval", 7 * DAY, 90 * DAY)),
        ("{every: 12h}", RetrainPolicy("interval", timedelta(hours=12), None)),
        ("{window: 30d}", RetrainPolicy("each_batch", None, 30 * DAY)),
        (
            "{every: on_drift, window: 3d, description: why}",
            RetrainPolicy("on_drift", None, 3 * DAY),
        ),
    ],
)
def test_good_policies_load(tmp_path, retrain, want):
    contract, _ = load(tmp_path, retrain)
    assert contract.retrain == want
    assert contract.retrain.retrain_on_drift is (want.mode == "on_drift")


@pytest.mark.parametrize(
    "retrain, key, message",
    [
        ("weekly", "model.retrain", "must be a mapping {every, window}, got 'weekly'"),
        ("{every: 7d, often: true}", "model.retrain.often", "unknown key(s) ['often']"),
        ("{every: 7}", "model.retrain.every", "must be a duration <N>d or <N>h (N >= 1), each"),
        ("{every: 7 days}", "model.retrain.every", "got '7 days'"),
        ("{every: 0d}", "model.retrain.every", "(N >= 1)"),
        ("{every: 30m}", "model.retrain.every", "<N>d or <N>h"),
        ("{every: 400d}", "model.retrain.every", "must be at most 366d"),
        ("{every: drift}", "model.retrain.every", "each_batch or on_drift, got 'drift'"),
        ("{every: 7d, window: 12h}", "model.retrain.window", "must be <N>d (a number of days)"),
        ("{every: 7d, window: [90d]}", "model.retrain.window", "got a list"),
        ("{every: 7d, window: 2d}", "model.retrain.window", "at least 3 days (the date split"),
        ("{every: 7d, window: 0d}", "model.retrain.window", "must be <N>d (a number of days)"),
    ],
)
def test_bad_policies_name_file_line_key_and_rule(tmp_path, retrain, key, message):
    with pytest.raises(contracts.ContractError) as err:
        load(tmp_path, retrain)
    path = tmp_path / "shop.yaml"
    text = str(err.value)
    assert text.startswith(f"{path}:{RETRAIN_LINE}: {key}: "), text
    assert message in text, text


def test_the_reference_contracts_declare_each_batch_over_all_history():
    # The demo and the end-to-end tests chain ingest -> ... -> promote by asset events.
    for dataset in ("flights", "flights_delay_minutes", "flights_delay_class"):
        contract = contracts.load_contract(dataset)
        assert "retrain" in contract.model, dataset
        assert contract.retrain == RetrainPolicy("each_batch", None, None), dataset


@pytest.mark.parametrize(
    "every, cron",
    [
        ("1d", "0 0 * * *"),
        ("24h", "0 0 * * *"),
        ("7d", "0 0 * * 1"),
        ("6h", "0 */6 * * *"),
        ("1h", "0 * * * *"),
        ("2d", None),  # a cron's day-of-month step restarts each month: a fixed delta instead
        ("14d", None),
        ("5h", None),
        ("36h", None),
    ],
)
def test_a_cadence_is_a_cron_only_when_one_states_it_exactly(every, cron):
    assert policy_of({"every": every}).cron() == cron


def test_other_modes_have_no_cron():
    assert policy_of({"every": "each_batch"}).cron() is None
    assert policy_of({"every": "on_drift"}).cron() is None


DAYS = [f"date=2013-01-{d:02d}" for d in range(1, 11)] + ["date=2013-03-31"]


def test_the_window_ends_at_the_newest_validated_day_not_the_clock():
    policy = policy_of({"every": "7d", "window": "90d"})
    assert policy.window_dates(DAYS) == ("2013-01-01", "2013-03-31")  # 90 days, both ends in
    assert policy_of({"window": "3d"}).window_dates(DAYS[:10]) == ("2013-01-08", "2013-01-10")


def test_the_run_params_win_over_the_window():
    policy = policy_of({"window": "30d"})
    assert policy.window_dates(DAYS, "2013-01-02", None) == ("2013-01-02", None)
    assert policy.window_dates(DAYS, "2013-01-02", "2013-01-05") == ("2013-01-02", "2013-01-05")
    # Only the last day given: the window ends there.
    assert policy.window_dates(DAYS, None, "2013-01-30") == ("2013-01-01", "2013-01-30")


def test_without_a_window_all_history():
    policy = policy_of(None)
    assert policy.window_dates(DAYS) == (None, None)
    assert policy.window_dates([], None, "2013-01-05") == (None, "2013-01-05")


def test_a_window_with_nothing_validated_is_not_found():
    with pytest.raises(NotFoundError, match="no validated partitions"):
        policy_of({"window": "30d"}).window_dates(["snapshot"])


def test_the_window_reads_every_partition_granularity():
    assert str(partition_last_day("date=2013-01-07")) == "2013-01-07"
    assert str(partition_last_day("hour=2013-01-07T23")) == "2013-01-07"
    assert str(partition_last_day("month=2013-02")) == "2013-02-28"
    assert partition_last_day("snapshot") is None
    policy = policy_of({"window": "31d"})
    assert policy.window_dates(["month=2013-01", "month=2013-02"]) == ("2013-01-29", "2013-02-28")
    assert policy.window_dates(["hour=2013-01-31T05"]) == ("2013-01-01", "2013-01-31")


def test_describe_says_when_and_over_what():
    assert policy_of({"every": "7d", "window": "90d"}).describe() == (
        "retrains every 7d, when new validated data came in, over the last 90 validated days"
    )
    assert "12h" in policy_of({"every": "12h"}).describe()
    assert "drift" in policy_of({"every": "on_drift"}).describe()
