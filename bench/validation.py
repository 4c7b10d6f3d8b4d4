"""Contract validation at scale: ours (`validate_dask`: the GX suite per partition on two Dask
workers, run column by column on one-column views; table rules over the whole batch) against
the reference (GX on one pandas frame of the same rows: one run of the whole suite, as GX is
plainly used; the same table rules in pandas).

    python -m bench.validation [--rows 10000000] [--repeat 3]

Synthetic flights (`ml.dev.synthetic`) are written once as zstd parquet parts to a local S3 API
server (moto). Both sides read the same parts from S3 and validate them against the `flights`
contract; read time is included on both sides. Reported: the median of `--repeat` runs, rows
per second, their ratio (goal: >= 1.6 with two workers), and the peak RSS of each Dask worker
at the full row count and at a quarter of it (goal: bounded by partition size, not by dataset
size). The last line is `validation: ratio=<x.xx> goal=1.6 met=<yes|no>`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Any

from bench._common import (
    MemorySampler,
    available_memory,
    format_table,
    human_bytes,
    local_cluster,
    print_result,
    quiet_dask,
    s3_server,
    time_runs,
    worker_sampler,
)

GOAL = 1.6
CONTRACT = "flights"
# The freshness rule is measured against the batch's partition; the data runs to 2013-12-31.
PARTITION = "date=2013-12-31"
# The reference holds the frame, GX's working copies and metrics at once: this many times the
# frame's own size is needed for it to run (measured on flights-shaped frames: ~3-4x).
REFERENCE_MEMORY_FACTOR = 6


def default_rows_per_part(rows: int) -> int:
    """1M rows per part (amortises GX's per-run overhead), at least 8 parts for small runs."""
    return max(1, min(1_000_000, math.ceil(rows / 8)))


def write_dataset(rows: int, rows_per_part: int, seed: int, name: str) -> tuple[list[str], float]:
    from ml.dev import synthetic
    from ml.settings import get_settings

    s = get_settings()
    url = f"s3://{s.bucket('raw')}/bench/{name}"
    started = time.perf_counter()
    urls = synthetic.write_flights_parquet(
        rows, url, rows_per_part=rows_per_part, seed=seed, storage_options=s.s3_storage_options()
    )
    return urls, time.perf_counter() - started


def read_dask(urls: list[str]):
    """The parts as a Dask frame, as `ml.storage.read_dask` reads a batch's parts."""
    import dask.dataframe as dd

    from ml.settings import get_settings

    return dd.read_parquet(
        urls,
        storage_options=get_settings().s3_storage_options(),
        dataset={"partitioning": None},
    )


def read_pandas(urls: list[str]):
    """The parts as one pandas frame, as `ml.storage.read_batch` reads a batch."""
    import pandas as pd

    from ml import storage

    fs = storage.filesystem()
    frames = []
    for url in urls:
        with fs.open(url, "rb") as fh:
            frames.append(pd.read_parquet(fh))
    return pd.concat(frames, ignore_index=True)


def validate_ours(urls: list[str]):
    from ml.validation.execute import validate_dask

    return validate_dask(read_dask(urls), CONTRACT, partition=PARTITION)


def read_only_ours(urls: list[str]) -> int:
    """Decode every part on the workers and count rows: the floor under `validate_ours`."""
    return int(read_dask(urls).map_partitions(len).sum().compute())


def partition_suite_ours(urls: list[str]) -> int:
    """Only the per-partition GX suite on every part (no whole-batch rules, no merge): with the
    read floor, it splits `validate_ours` into decode, GX, and whole-batch rules + scheduling."""
    import dask

    from ml.validation.execute import validate_partition
    from ml.validation.rules import as_contract

    contract = as_contract(CONTRACT)
    parts = read_dask(urls).to_delayed()
    partials = dask.compute(*[dask.delayed(validate_partition)(p, contract) for p in parts])
    return sum(p["rows"] for p in partials)


def validate_reference(urls: list[str], by_column: bool = False) -> tuple[Any, float, float]:
    """Read every part into one frame and validate it in this process: one GX run of the whole
    suite (the reference), or with `by_column` our column-by-column runs (for the breakdown)."""
    from ml.validation.suite import validate_frame

    started = time.perf_counter()
    df = read_pandas(urls)
    read_s = time.perf_counter() - started
    report = validate_frame(df, CONTRACT, partition=PARTITION, by_column=by_column)
    del df
    return report, read_s, time.perf_counter() - started - read_s


def frame_bytes_per_row() -> float:
    from ml.dev import synthetic

    sample = synthetic.generate_flights(20_000, seed=99)
    return sample.memory_usage(deep=True).sum() / len(sample)


def _check(report, rows: int, who: str) -> str:
    """Both sides must see every row; only the per-day row_count rule may fail."""
    if report.rows != rows:
        raise SystemExit(f"{who}: validated {report.rows} rows, expected {rows}")
    unexpected = [r for r in report.failed_rules if not r.endswith(".table.row_count")]
    if unexpected:
        print(f"warning: {who} failed rules {report.failure_summary()}", file=sys.stderr)
    return ",".join(report.failed_rules) or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.validation", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows-per-part", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="4GiB", help="per Dask worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-reference", action="store_true", help="skip GX on one pandas frame")
    parser.add_argument(
        "--dask-malloc-trim",
        action="store_true",
        help="start workers with Dask's MALLOC_TRIM_THRESHOLD_=65536 instead of the pipeline's "
        "worker setting (glibc's default: see ml/cluster.py)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.rows < 8:
        parser.error("--repeat must be >= 1 and --rows >= 8")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    quiet_dask()
    rows, quarter = args.rows, max(2, args.rows // 4)
    per_part = args.rows_per_part or default_rows_per_part(rows)

    with s3_server() as endpoint:
        print(f"S3 API server (moto) at {endpoint}; writing synthetic flights ...", flush=True)
        urls, write_s = write_dataset(rows, per_part, args.seed, f"flights-{rows}")
        q_urls, q_write_s = write_dataset(quarter, per_part, args.seed + 1, f"flights-{quarter}")
        print(
            f"wrote {rows:,} rows in {len(urls)} parts ({write_s:.1f} s) and {quarter:,} rows in "
            f"{len(q_urls)} parts ({q_write_s:.1f} s); ~{per_part:,} rows per part, zstd",
            flush=True,
        )
        warm_urls, _ = write_dataset(2 * args.workers * 2_000, 2_000, args.seed + 2, "warm-up")
        ours = run_ours(args, urls, q_urls, warm_urls, rows, quarter)
        ref = run_reference(args, urls, rows)

    return report(args, rows, quarter, per_part, len(urls), ours, ref)


def run_ours(
    args, urls: list[str], q_urls: list[str], warm_urls: list[str], rows: int, quarter: int
) -> dict:
    out: dict[str, Any] = {}
    # the workers as the stack starts them (ml.cluster), unless asked for Dask's default
    with local_cluster(
        args.workers, args.memory_limit, stack_config=not args.dask_malloc_trim
    ) as client:
        sampler = worker_sampler(client)
        idle = sampler.sample()
        started = time.perf_counter()
        validate_ours(warm_urls)  # warm-up: GX imported and the suite built in each worker
        out["warmup_s"] = time.perf_counter() - started
        out["idle_rss"] = idle
        out["warm_rss"] = sampler.sample()
        print(f"Dask: {len(sampler.pids)} workers, warm-up {out['warmup_s']:.1f} s", flush=True)
        with sampler.phase("quarter"):
            out["quarter"] = time_runs(lambda: validate_ours(q_urls), args.repeat)
        print(f"ours at {quarter:,} rows: {out['quarter'].times}", flush=True)
        with sampler.phase("full"):
            out["full"] = time_runs(lambda: validate_ours(urls), args.repeat)
        print(f"ours at {rows:,} rows: {out['full'].times}", flush=True)
        # the breakdown: once each
        out["read"] = time_runs(lambda: read_only_ours(urls), 1)
        out["suite"] = time_runs(lambda: partition_suite_ours(urls), 1)
        out["peaks"] = sampler.peaks
        out["labels"] = sorted(sampler.pids)
    return out


def run_reference(args, urls: list[str], rows: int) -> dict:
    from ml.validation.suite import validate_frame

    out: dict[str, Any] = {}
    need = frame_bytes_per_row() * rows * REFERENCE_MEMORY_FACTOR
    free = available_memory()
    out["need"], out["free"] = need, free
    if args.no_reference:
        out["skipped"] = "--no-reference"
        return out
    if need > 0.8 * free:
        out["skipped"] = (
            f"{rows:,} rows need ~{human_bytes(need)} in one process, {human_bytes(free)} available"
        )
        return out
    warm = read_pandas(urls[:1]).head(10_000)
    validate_frame(warm, CONTRACT, partition=PARTITION, by_column=False)  # warm-up: GX, suite
    del warm
    sampler = MemorySampler({"reference": os.getpid()})
    with sampler.phase("reference"):
        timing = time_runs(lambda: validate_reference(urls), args.repeat)
    out["timing"] = timing
    out["peak"] = sampler.peaks["reference"]["reference"]
    print(f"reference at {rows:,} rows: {timing.times}", flush=True)
    # the breakdown: how much is parallelism, how much the column-by-column GX runs (once)
    out["one_process"] = time_runs(lambda: validate_reference(urls, by_column=True), 1)
    return out


def report(args, rows, quarter, per_part, n_parts, ours, ref) -> int:
    full, q = ours["full"], ours["quarter"]
    peaks = ours["peaks"]
    labels = ours["labels"]
    table = [
        [
            f"ours: validate_dask, {args.workers} workers",
            rows,
            full.median,
            full.rate(rows),
            *[human_bytes(peaks["full"][w]) for w in labels],
        ],
        [
            "ours at 1/4 of the rows",
            quarter,
            q.median,
            q.rate(quarter),
            *[human_bytes(peaks["quarter"][w]) for w in labels],
        ],
        [
            "  breakdown: read + decode parts only",
            rows,
            ours["read"].median,
            ours["read"].rate(rows),
            *["" for _ in labels],
        ],
        [
            "  breakdown: read + GX suite per partition",
            rows,
            ours["suite"].median,
            ours["suite"].rate(rows),
            *["" for _ in labels],
        ],
    ]
    ratio = float("nan")
    if "timing" in ref:
        t = ref["timing"]
        _, read_s, gx_s = t.result
        table.append(
            [
                "reference: GX on one pandas frame",
                rows,
                t.median,
                t.rate(rows),
                f"main process {human_bytes(ref['peak'])}",
                *["" for _ in labels[1:]],
            ]
        )
        table.append(
            [f"  of which read {read_s:.1f} s, GX {gx_s:.1f} s (last run)", "", "", "", ""]
            + ["" for _ in labels[1:]]
        )
        one = ref["one_process"]
        table.append(
            [
                "  breakdown: ours column by column, one process",
                rows,
                one.median,
                one.rate(rows),
                "",
                *["" for _ in labels[1:]],
            ]
        )
        ratio = full.rate(rows) / t.rate(rows)
    headers = ["run", "rows", "median s", "rows/s", *[f"peak RSS {w}" for w in labels]]
    print()
    print(
        f"Validation of synthetic flights against contract '{CONTRACT}' "
        f"({n_parts} parquet parts of ~{per_part:,} rows on S3; median of {args.repeat} runs; "
        "read time from S3 included on both sides)"
    )
    trim = "Dask default, 65536" if args.dask_malloc_trim else "glibc default (ml.cluster)"
    print(
        f"Dask: {args.workers} worker processes x 1 thread, memory limit {args.memory_limit} "
        f"each, MALLOC_TRIM_THRESHOLD_ {trim}; machine: {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(format_table(headers, table))
    print()
    print(f"ours, runs (s): {', '.join(f'{x:.2f}' for x in full.times)}")
    rest = full.median - ours["suite"].median
    print(
        f"ours, where the time goes (one run each): read + decode {ours['read'].median:.1f} s, "
        f"GX suite per partition {ours['suite'].median - ours['read'].median:.1f} s, "
        f"whole-batch rules (key hash buckets) + merge + scheduling {rest:.1f} s"
    )
    print(f"ours, warm-up (GX import + suite per worker, not timed): {ours['warmup_s']:.1f} s")
    idle = ", ".join(f"{k} {human_bytes(v)}" for k, v in sorted(ours["warm_rss"].items()))
    print(f"worker RSS after warm-up: {idle}")
    growth = max(peaks["full"].values()) / max(1, max(peaks["quarter"].values()))
    scale = rows / quarter
    if growth < 1.5:
        verdict = "flat: bounded by partition size"
    elif growth < 0.6 * scale:
        verdict = "sublinear: grows with the dataset, far from linearly (see the report)"
    else:
        verdict = "GROWS ~linearly with dataset size"
    print(
        f"worker peak RSS: {human_bytes(max(peaks['quarter'].values()))} at {quarter:,} rows, "
        f"{human_bytes(max(peaks['full'].values()))} at {rows:,} rows (x{growth:.2f} for "
        f"x{scale:.0f} rows): {verdict}"
    )
    if "timing" in ref:
        print(f"reference, runs (s): {', '.join(f'{x:.2f}' for x in ref['timing'].times)}")
        ours_report, ref_report = full.result, ref["timing"].result[0]
        print(
            f"failed rules: ours {_check(ours_report, rows, 'ours')}; "
            f"reference {_check(ref_report, rows, 'reference')} "
            "(row_count bounds are per-day batches)"
        )
        print_result("validation", ratio, GOAL)
    else:
        print(f"reference skipped: {ref['skipped']}")
        _check(full.result, rows, "ours")
        print(f"validation: ratio=n/a goal={GOAL:g} met=no")
    return 0


if __name__ == "__main__":
    sys.exit(main())
