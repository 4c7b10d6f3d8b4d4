"""History through Airflow at the cost of the work: a year of a small daily dataset ingested and
validated through the real local stack (Postgres as the Airflow database when one answers).

    python -m bench.orchestration [--days 365] [--reference-days 31] [--quick]

The dataset is the contract-only `orders` (one CSV a day in the drop folder), here with one or
two orders a day. Ours: one manual `ingest_orders` run over the whole range; partitions are
ingested and validated in chunks (a month of days per task), every day still its own committed
batch. The reference is the shape of before (`MLPIPE_CHUNK_MAX_PARTITIONS=1`: one Airflow task
per day and stage) on its own stack, over `--reference-days` days (a year of it takes half an
hour on 2 cores), scaled to `--days` by its measured seconds per day. Reported for each side:
the wall time from the trigger to the end of the validate run, the sum of the task durations
(task compute), their ratio, and the median gap between a task's end and the next task's start.

Goal (issue 12, 7b): 365 partitions ingested and validated in <= 90 s on this 2-core machine. The
last line is `orchestration: history_year_s=<s> goal=90 met=<yes|no>` (the year's wall time of
ours); `--quick` runs 31 days, a check of the harness, not of the goal. Issue 12's part (a), the
whole flights year through training and scoring from one backfill, is not measured here yet.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, date, datetime, timedelta

from bench._common import environment, format_table, stack_env
from bench.task_startup import _airflow_database

GOAL_S = 90.0
FIRST = date(2024, 1, 1)


def _times(client, dag_id: str, run_id: str) -> list[tuple[datetime, datetime]]:
    out = []
    for ti in client.task_instances(dag_id, run_id):
        if ti.get("start_date") and ti.get("end_date"):
            out.append((_t(ti["start_date"]), _t(ti["end_date"])))
    return out


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _gaps(spans: list[tuple[datetime, datetime]]) -> float:
    """Median wait from a task's end to the start of the next task that started after it."""
    starts = sorted(s for s, _ in spans)
    gaps = []
    for _, end in spans:
        later = [s for s in starts if s >= end]
        if later:
            gaps.append((later[0] - end).total_seconds())
    return statistics.median(gaps) if gaps else 0.0


def measure(days: int, max_partitions: int | None) -> dict[str, float]:
    """One stack; one ingest run over `days` days of one-row orders and the validate run it
    starts; wall, task compute and gaps."""
    from ml import settings, storage
    from ml.dev.airflow_api import AirflowClient
    from ml.dev.stack import lifecycle
    from tests.orders_data import drop_orders

    env = stack_env("bench-orchestration-")
    if max_partitions:
        env["MLPIPE_CHUNK_MAX_PARTITIONS"] = str(max_partitions)
    with _airflow_database() as database, environment({**env, **database}):
        s = settings.get_settings()
        last = FIRST + timedelta(days=days - 1)
        for i in range(days):
            drop_orders(s.drop_path, FIRST + timedelta(days=i), mean_orders=1)
        try:
            lifecycle.up(s, timeout=300)
            client = AirflowClient(s.airflow_api_url)
            client.wait_for_dags(["ingest_orders", "validate_orders"], timeout=300)
            since, started = datetime.now(UTC), time.monotonic()
            conf = {"date_from": FIRST.isoformat(), "date_to": last.isoformat()}
            run_id = client.trigger("ingest_orders", conf)
            ingest = client.wait_for_run("ingest_orders", run_id, 3600)
            validate = client.wait_for_new_run("validate_orders", since, 3600)
            wall = time.monotonic() - started
            if {ingest["state"], validate["state"]} != {"success"}:
                raise RuntimeError(f"the runs failed: {ingest['state']}, {validate['state']}")
            spans = _times(client, "ingest_orders", run_id) + _times(
                client, "validate_orders", validate["dag_run_id"]
            )
            batches = len(storage.latest_batches("validated", "orders"))
        finally:
            lifecycle.down(s)
    if batches != days:
        raise RuntimeError(f"{batches} validated batches for {days} days")
    compute = sum((e - s).total_seconds() for s, e in spans)
    return {
        "days": days,
        "tasks": len(spans),
        "wall": wall,
        "compute": compute,
        "gap": _gaps(spans),
    }


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--reference-days", type=int, default=31)
    parser.add_argument("--quick", action="store_true", help="31 days: a check of the harness")
    args = parser.parse_args(argv)
    days = 31 if args.quick else args.days
    ours = measure(days, None)
    reference = measure(min(args.reference_days, days), 1)
    scale = days / reference["days"]
    rows = [
        [
            name,
            r["days"],
            r["tasks"],
            round(r["wall"], 1),
            round(r["compute"], 1),
            round(r["compute"] / r["wall"], 2),
            round(r["gap"], 2),
            round(r["wall"] * days / r["days"], 1),
        ]
        for name, r in (("ours (chunked)", ours), ("reference (a task per day)", reference))
    ]
    print(
        format_table(
            [
                "side",
                "days",
                "tasks",
                "wall s",
                "task compute s",
                "compute/wall",
                "median gap s",
                f"wall s for {days} days",
            ],
            rows,
        )
    )
    print(
        f"reference scaled x{scale:.1f}: {reference['wall'] * scale:.0f} s for {days} days; "
        f"ours {ours['wall'] / (reference['wall'] * scale):.3f} of it"
    )
    met = "yes" if ours["wall"] <= GOAL_S and days >= 365 else "no"
    line = f"orchestration: history_year_s={ours['wall']:.1f} goal={GOAL_S:.0f} met={met}"
    print(line)
    return line


if __name__ == "__main__":
    main()
