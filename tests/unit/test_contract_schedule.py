"""A contract's `schedule` section: checked on load, turned into a partition-aware timetable."""

from __future__ import annotations

import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from ml import contracts
from ml.contract_schedule import Schedule, parse_duration

pytestmark = pytest.mark.unit

DAGS = Path(__file__).resolve().parents[2] / "dags"
HEAD = "dataset: x\nowner: o\ncolumns: {a: {type: int}}\npartition: {column: a, granularity: day}\n"


def _load(tmp_path, schedule: str):
    path = tmp_path / "x.yaml"
    path.write_text(HEAD + f"schedule: {schedule}\n")
    return contracts.load_contract(path)


def test_orders_runs_by_itself_every_night():
    s = contracts.load_contract("orders").schedule
    assert s == Schedule("0 3 * * *", date(2024, 1, 1), 1, "UTC", None, False, timedelta(hours=6))
    assert contracts.load_contract("flights").schedule is None  # manual: a closed history


def test_defaults_and_durations(tmp_path):
    s = _load(tmp_path, '{cron: "0 * * * *", start: 2024-02-01, wait: 90m, catchup: true}').schedule
    assert (s.partition_lag, s.timezone, s.end, s.catchup) == (1, "UTC", None, True)
    assert s.wait == timedelta(minutes=90)
    assert s.key_format("hour") == "%Y-%m-%dT%H" and s.key_format("month") == "%Y-%m"
    assert parse_duration("7d") == timedelta(days=7) and parse_duration(0) == timedelta(0)
    assert parse_duration("30s") == timedelta(seconds=30)
    assert parse_duration("7 weeks") is None and parse_duration(True) is None


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ('{cron: "0 3 * *", start: 2024-01-01}', "schedule.cron: must be a 5-field cron"),
        ('{cron: "0 25 * * *", start: 2024-01-01}', "schedule.cron: must be a 5-field cron"),
        ('{cron: "0 3 * * *"}', "missing required key 'start'"),
        ('{cron: "0 3 * * *", start: soon}', "schedule.start: must be a date"),
        ('{cron: "0 3 * * *", start: 2024-02-01, end: 2024-01-01}', "is before start"),
        ('{cron: "0 3 * * *", start: 2024-01-01, partition_lag: -1}', "partition_lag"),
        ('{cron: "0 3 * * *", start: 2024-01-01, timezone: Mars/Base}', "IANA time zone"),
        ('{cron: "0 3 * * *", start: 2024-01-01, wait: forever}', "schedule.wait: must be"),
        ('{cron: "0 3 * * *", start: 2024-01-01, catchup: "yes"}', "true or false"),
        ('{cron: "0 3 * * *", start: 2024-01-01, every: 1}', "unknown key(s) ['every']"),
    ],
)
def test_a_broken_schedule_names_the_key_and_the_rule(tmp_path, schedule, message):
    with pytest.raises(contracts.ContractError) as err:
        _load(tmp_path, schedule)
    assert str(tmp_path / "x.yaml") + ":5:" in str(err.value)
    assert message in str(err.value)


def test_the_first_tick_ingests_the_start_partition(monkeypatch):
    monkeypatch.syspath_prepend(str(DAGS))
    sys.modules.pop("_mlpipe", None)
    import _mlpipe

    daily = Schedule("0 3 * * *", date(2024, 1, 1), 1, "UTC", date(2024, 1, 31))
    first, last = _mlpipe.schedule_bounds(daily)
    assert (first.isoformat(), last.isoformat()) == (
        "2024-01-02T03:00:00+00:00",  # the tick after the 1st ingests the 1st
        "2024-02-01T03:00:00+00:00",
    )
    same_day = Schedule("30 23 * * *", date(2024, 1, 1), 0, "Europe/Berlin")
    assert _mlpipe.schedule_bounds(same_day)[0].isoformat() == "2024-01-01T23:30:00+01:00"


BAG = """
import json, sys
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag
bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=Path(sys.argv[1]))
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "timetables": {d.dag_id: type(d.timetable).__name__ for d in bag.dags.values()},
                  "keys": {d.dag_id: getattr(d.timetable, "key_format", None)
                           for d in bag.dags.values()}}))
"""


def test_a_scheduled_contract_gets_partition_aware_dags(tmp_path):
    """flights with a schedule: ingest on a cron partition timetable, validate and the scoring
    of new partitions on partitioned asset timetables; unscheduled weather stays as it was."""
    import json
    import os
    import shutil
    import subprocess

    folder = tmp_path / "contracts"
    shutil.copytree(contracts.CONTRACTS_DIR, folder)
    flights = folder / "flights.yaml"
    flights.write_text(
        flights.read_text()
        + 'schedule: {cron: "0 6 * * *", start: 2013-01-01, end: 2013-12-31, wait: 0}\n'
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db",
        "MLPIPE_CONTRACTS_DIR": str(folder),
    }
    out = subprocess.run(
        [sys.executable, "-c", BAG, str(DAGS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    timetables = result["timetables"]
    assert timetables["ingest_flights"] == "CronPartitionTimetable"
    assert result["keys"]["ingest_flights"] == "%Y-%m-%d"
    assert timetables["validate_flights"] == "PartitionedAssetTimetable"
    # each_batch: the keyed events of validated flights (weather, unscheduled, is read then)
    assert timetables["preprocess_flights"] == "PartitionedAssetTimetable"
    assert timetables["preprocess_flights_delay_class"] == "AssetTriggeredTimetable"
    assert timetables["score_partitions_flights"] == "PartitionedAssetTimetable"
    assert timetables["batch_score_flights"] == "AssetOrTimeSchedule"  # champion moves, daily
    assert timetables["ingest_weather"] == "NullTimetable"  # manual runs only
    assert timetables["validate_weather"] == "AssetTriggeredTimetable"
    assert "score_partitions_flights_delay_class" not in timetables  # not scheduled
