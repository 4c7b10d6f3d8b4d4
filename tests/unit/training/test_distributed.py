"""DDP through torchrun: two processes on the CPU with gloo."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ml.training.distributed import torchrun_command
from tests.unit.training._fit import SMALL

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


def test_ddp_two_processes_on_cpu_with_gloo(tmp_path):
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
