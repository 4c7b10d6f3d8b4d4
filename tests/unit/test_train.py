"""Training without servers: the input pipeline, determinism, checkpoint resume, NaN loss, DDP,
the pyfunc on raw rows, compression, the baseline and the train DAG's wiring."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ml.metrics import binary_metrics
from ml.training import checkpoint
from ml.training.loader import (
    Batches,
    frame_tensors,
    list_shards,
    split_batches,
    synthetic_features,
)
from ml.training.train import TrainingDivergedError, TrainParams, fit_network

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SMALL = {"epochs": 3, "hidden": 32, "layers": 2, "emb_dim": 4, "batch_size": 256, "patience": 5}


@pytest.fixture(scope="module")
def data():
    frame, transform = synthetic_features(4000, seed=0)
    val, _ = synthetic_features(1000, seed=1)
    return frame, val, transform


def fit(data, store=None, **overrides):
    frame, val, transform = data
    hp = TrainParams.from_dict({**SMALL, **overrides})
    batches = Batches(
        frame_tensors(frame, transform), transform, batch_size=hp.batch_size, seed=hp.seed
    )
    return fit_network(
        batches, frame_tensors(val, transform), transform, hp, device="cpu", checkpoint=store
    )


def weights(network) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in network.state_dict().items()}


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_is_deterministic_with_a_fixed_seed_and_learns(data):
    net1, hist1 = fit(data)
    net2, hist2 = fit(data)
    assert same_weights(weights(net1), weights(net2))
    assert [r["train_loss"] for r in hist1] == [r["train_loss"] for r in hist2]
    net3, _ = fit(data, seed=7)
    assert not same_weights(weights(net1), weights(net3))
    assert hist1[-1]["val_roc_auc"] > 0.7  # the generated target is learnable


def test_resume_from_a_checkpoint_continues_where_it_stopped(data, tmp_path):
    import fsspec

    fs = fsspec.filesystem("file")
    full, full_hist = fit(data, epochs=4)
    store = checkpoint.CheckpointStore(str(tmp_path / "ckpt"), fs=fs)
    fit(data, store=store, epochs=2)
    assert store.latest()["epoch"] == 1
    resumed, hist = fit(data, store=store, epochs=4)
    assert [r["epoch"] for r in hist] == [0, 1, 2, 3]
    # Same batches, RNG and optimizer state: bit-for-bit the uninterrupted run.
    assert [r["train_loss"] for r in hist] == [r["train_loss"] for r in full_hist]
    assert same_weights(weights(resumed), weights(full))
    assert len(list((tmp_path / "ckpt").glob("epoch-*.pt"))) <= checkpoint.KEEP


def test_a_corrupt_checkpoint_is_refused(data, tmp_path):
    import fsspec

    store = checkpoint.CheckpointStore(str(tmp_path / "ckpt"), fs=fsspec.filesystem("file"))
    fit(data, store=store, epochs=1)
    blob = tmp_path / "ckpt" / store.latest()["key"]
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(checkpoint.CheckpointError, match="checksum"):
        store.load()


def test_nan_in_the_input_stops_training_with_a_clear_error(data):
    frame, val, transform = data
    bad = frame.copy()
    bad.loc[10, "num__x0"] = np.nan
    with pytest.raises(TrainingDivergedError, match=r"epoch 0.*NaN/inf"):
        fit((bad, val, transform))


def test_task_key_is_stable_per_task_instance():
    a = checkpoint.task_key("train_flights", "manual__1", "train_model", -1)
    assert a == checkpoint.task_key("train_flights", "manual__1", "train_model", -1)
    assert a != checkpoint.task_key("train_flights", "manual__2", "train_model", -1)
    assert a != checkpoint.task_key("train_flights", "manual__1", "train_model", 0)


def test_params_are_checked():
    with pytest.raises(ValueError, match="precision"):
        TrainParams.from_dict({"precision": "fp8"})
    with pytest.raises(ValueError, match="epochs"):
        TrainParams.from_dict({"epochs": 0})


def test_shards_stream_every_row_once_per_epoch_and_ranks_share_evenly(data, tmp_path):
    frame, _, transform = data
    frame = frame.assign(row=np.arange(len(frame), dtype="float32"))
    for i in range(4):
        frame.iloc[i * 1000 : (i + 1) * 1000].to_parquet(
            tmp_path / f"part-{i}.parquet", index=False
        )
    shards = list_shards(str(tmp_path))
    assert sum(s.rows for s in shards) == len(frame)
    streamed = split_batches(str(tmp_path), transform, batch_size=300, in_memory=False)
    loaded = split_batches(str(tmp_path), transform, batch_size=300, in_memory=True)
    assert streamed.streaming and not loaded.streaming
    for batches in (streamed, loaded):
        # x0 values identify rows: every row exactly once per epoch, in a different order.
        seen = [torch.cat([b[0][:, 0] for b in batches.epoch(e)]) for e in (0, 1)]
        for s in seen:
            assert torch.equal(
                torch.sort(s).values, torch.sort(frame_tensors(frame, transform)[0][:, 0]).values
            )
        assert not torch.equal(seen[0], seen[1])
    assert streamed.positive_rate() == pytest.approx(frame["target"].mean())
    ranks = [
        split_batches(
            str(tmp_path), transform, batch_size=128, rank=r, world_size=2, in_memory=False
        )
        for r in (0, 1)
    ]
    counts = [sum(len(b[2]) for b in r.epoch(0)) for r in ranks]
    assert counts[0] == counts[1] == ranks[0].samples_per_epoch == len(frame) // 2
    firsts = [torch.cat([b[0][:, 0] for b in r.epoch(0)]) for r in ranks]
    assert not set(firsts[0].tolist()) & set(firsts[1].tolist())  # disjoint shares


def test_ddp_two_processes_on_cpu_with_gloo(tmp_path):
    from ml.training.distributed import torchrun_command

    params = json.dumps({**SMALL, "epochs": 2})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [*torchrun_command(2), "--synthetic", "2000", "--params", params, "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["samples_per_epoch"] == ranks[1]["samples_per_epoch"] == 1000
    # DDP averaged the gradients: both ranks end with the same weights.
    assert ranks[0]["param_checksum"] == pytest.approx(ranks[1]["param_checksum"], rel=1e-6)
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history) == 2 and history[-1]["val_roc_auc"] > 0.6
    assert (tmp_path / "weights.pt").exists()


def test_pyfunc_takes_raw_rows_and_agrees_with_the_network(data, tmp_path):
    import mlflow

    from ml.training.model import (
        CONFIG_ARTIFACT,
        TRANSFORM_ARTIFACT,
        WEIGHTS_ARTIFACT,
        DelayModel,
        predict_proba,
    )

    _, val, transform = data
    network, _ = fit(data, epochs=1)
    (tmp_path / "t.json").write_text(transform.to_json())
    (tmp_path / "c.json").write_text(
        json.dumps({"network": TrainParams.from_dict(SMALL).network_config()})
    )
    torch.save(network.state_dict(), tmp_path / "w.pt")
    mlflow.pyfunc.save_model(
        str(tmp_path / "model"),
        python_model=DelayModel(),
        artifacts={
            TRANSFORM_ARTIFACT: str(tmp_path / "t.json"),
            CONFIG_ARTIFACT: str(tmp_path / "c.json"),
            WEIGHTS_ARTIFACT: str(tmp_path / "w.pt"),
        },
        pip_requirements=["torch"],
    )
    raw = pd.DataFrame({c: val[f"num__{c}"].astype("float64") for c in transform.numeric})
    for c in transform.categorical:
        raw[c] = [transform.vocab[c][k - 1] for k in val[f"cat__{c}"]]
    raw.loc[0, "c0"] = "never-seen"  # out of vocabulary: the OOV embedding, no error
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    out = loaded.predict(raw)
    expected = predict_proba(network, transform.apply(raw), transform)
    assert list(out.columns) == ["probability"] and len(out) == len(raw)
    np.testing.assert_allclose(out["probability"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    same = predict_proba(network, val, transform)
    np.testing.assert_allclose(out["probability"].to_numpy()[1:], same[1:], rtol=1e-5, atol=1e-6)


def test_compact_variant_is_smaller_and_close(data):
    from ml.training.compress import compact_variant, prune_magnitude

    _, val, transform = data
    network, _ = fit(data, hidden=128)
    pruned = prune_magnitude(network, 0.5)
    zeros = float((pruned.mlp[0].weight == 0).float().mean())
    assert 0.45 < zeros < 0.55
    _, report = compact_variant(
        network, frame_tensors(val, transform), frame_tensors(val, transform), 0.3, tolerance=0.02
    )
    assert report["size_bytes_compact"] < 0.6 * report["size_bytes_full"]
    assert abs(report["delta_test_roc_auc"]) < 0.02 and report["within_tolerance"] == 1.0
    assert report["cpu_latency_ms_compact"] > 0


def test_baseline_trees_on_the_same_features(data):
    from ml.training.baseline import BaselineParams, baseline_proba, fit_baseline

    frame, val, transform = data
    model = fit_baseline(frame, val, transform, BaselineParams(max_iter=50))
    metrics = binary_metrics(val["target"], baseline_proba(model, val, transform))
    assert metrics["roc_auc"] > 0.7
    assert 0 <= metrics["ece"] < 0.1


def test_metrics_include_pr_auc_and_calibration_error():
    y = np.array([0, 0, 1, 1])
    m = binary_metrics(y, np.array([0.1, 0.4, 0.35, 0.8]))
    assert m["roc_auc"] == pytest.approx(0.75)
    assert set(m) >= {"roc_auc", "pr_auc", "log_loss", "ece"}
    assert binary_metrics(y, y.astype(float))["ece"] == pytest.approx(1e-7, abs=1e-6)
