"""Per-task start-up through the real local stack: Airflow tasks of ours (`plugins/mlpipe_executor`:
the heavy libraries imported once, before the LocalExecutor's workers fork) against the reference
(Airflow's plain LocalExecutor: every task imports them itself, `MLPIPE_PRELOAD_MODULES=`).

    python -m bench.task_startup [--days 6] [--repeat 3]

Each side brings up its own local stack (Postgres as the Airflow database when one answers, as
in production; SQLite otherwise), then `--repeat` times triggers `ingest_weather` over `--days`
new days of the real 2013 weather and waits for the `validate_weather` run it starts. Reported:
the median duration of an ingest task and of a validate task (Airflow's own task durations), and
the wall time of each round. Ratio: reference median task duration / ours, over both kinds (goal:
>= 2, per-task start-up at least halved). The last line is
`task_startup: ratio=<x.xx> goal=2 met=<yes|no>`.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from bench._common import environment, format_table, print_result, stack_env

GOAL = 2.0
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def _airflow_database() -> Iterator[dict[str, str]]:
    """A fresh Postgres database for Airflow (dropped afterwards), or {} (SQLite)."""
    try:
        import psycopg2

        conn = psycopg2.connect(POSTGRES, connect_timeout=3)
    except Exception:
        yield {}
        return
    conn.autocommit = True
    name = f"mlpipe_bench_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "MLPIPE_AIRFLOW_DATABASE_URL": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
        }
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def _durations(client, dag_id: str, run: dict) -> list[float]:
    tis = client.task_instances(dag_id, run["dag_run_id"])
    return [ti["duration"] for ti in tis if ti.get("duration") and ti["state"] == "success"]


def measure(preload: bool, windows: list[tuple[str, str]]) -> dict[str, list[float]]:
    """One stack; one ingest + validate round per window; task durations and round walls."""
    from ml import settings
    from ml.dev.airflow_api import AirflowClient
    from ml.dev.stack import lifecycle

    env = stack_env("bench-startup-")
    if not preload:
        env["MLPIPE_PRELOAD_MODULES"] = ""
    out: dict[str, list[float]] = {"ingest": [], "validate": [], "wall": []}
    with _airflow_database() as database, environment({**env, **database}):
        s = settings.get_settings()
        try:
            lifecycle.up(s, timeout=300)
            client = AirflowClient(s.airflow_api_url)
            client.wait_for_dags(["ingest_weather", "validate_weather"], timeout=300)
            for date_from, date_to in windows:
                since, started = datetime.now(UTC), time.monotonic()
                conf = {"date_from": date_from, "date_to": date_to}
                ingest = client.wait_for_run(
                    "ingest_weather", client.trigger("ingest_weather", conf), 900
                )
                validate = client.wait_for_new_run("validate_weather", since, 900)
                out["wall"].append(time.monotonic() - started)
                if {ingest["state"], validate["state"]} != {"success"}:
                    raise RuntimeError(f"a round failed: {ingest['state']}, {validate['state']}")
                out["ingest"] += _durations(client, "ingest_weather", ingest)
                out["validate"] += _durations(client, "validate_weather", validate)
        finally:
            lifecycle.down(s)
    return out


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    first = date(2013, 2, 1)
    windows = [
        (
            (first + timedelta(days=i * args.days)).isoformat(),
            (first + timedelta(days=(i + 1) * args.days - 1)).isoformat(),
        )
        for i in range(args.repeat)
    ]
    sides = {"ours (preloaded)": measure(True, windows), "reference": measure(False, windows)}
    med = statistics.median
    rows = [
        [
            name,
            len(r["ingest"]) + len(r["validate"]),
            round(med(r["ingest"]), 2),
            round(med(r["validate"]), 2),
            round(med(r["ingest"] + r["validate"]), 2),
            round(med(r["wall"]), 1),
        ]
        for name, r in sides.items()
    ]
    print(
        format_table(
            ["side", "tasks", "ingest task s", "validate task s", "task s", "round wall s"], rows
        )
    )
    ratio = rows[1][4] / rows[0][4]
    return print_result("task_startup", ratio, GOAL)


if __name__ == "__main__":
    main()
