"""The benchmark helpers (bench/_common.py), without running a full bench."""

from __future__ import annotations

import os
import time

import pytest

from bench import _common
from bench.validation import default_rows_per_part

pytestmark = pytest.mark.unit


def test_time_runs_takes_the_median_and_keeps_the_last_result():
    calls = []

    def work():
        calls.append(1)
        time.sleep(0.01 * len(calls))
        return len(calls)

    before = []
    timing = _common.time_runs(work, 3, before=lambda: before.append(1))
    assert len(timing.times) == 3 and len(before) == 3
    assert timing.result == 3
    assert timing.median == sorted(timing.times)[1]
    assert timing.median >= 0.02
    assert timing.rate(100) == pytest.approx(100 / timing.median)
    with pytest.raises(ValueError):
        _common.time_runs(work, 0)


def test_result_line_is_the_exact_last_line_format(capsys):
    assert _common.result_line("validation", 1.6, 1.6) == "validation: ratio=1.60 goal=1.6 met=yes"
    assert _common.result_line("validation", 1.594, 1.6) == "validation: ratio=1.59 goal=1.6 met=no"
    _common.print_result("x", 2.0, 1.5)
    assert capsys.readouterr().out.splitlines()[-1] == "x: ratio=2.00 goal=1.5 met=yes"


def test_format_table_aligns_numbers():
    text = _common.format_table(
        ["run", "rows", "s"], [["ours", 1_000_000, 1.5], ["ref", 10, 12.25]]
    )
    lines = text.splitlines()
    assert lines[0].split() == ["run", "rows", "s"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].endswith("1.50") and "1,000,000" in lines[2]
    assert len(lines[2]) == len(lines[3])
    assert _common.human_bytes(3 * 1024**3) == "3.0 GiB"
    assert _common.human_bytes(512) == "512 B"


def test_memory_sampler_sees_a_peak_in_a_phase():
    sampler = _common.MemorySampler({"me": os.getpid()}, interval=0.005)
    base = sampler.sample()["me"]
    assert base > 0
    with sampler.phase("alloc"):
        block = bytearray(200 * 1024 * 1024)  # touched pages: RSS grows by ~200 MiB
        block[::4096] = b"x" * len(block[::4096])
        time.sleep(0.1)
        del block
        time.sleep(0.05)
    assert sampler.peaks["alloc"]["me"] >= base + 150 * 1024 * 1024
    with sampler.phase("idle"):
        time.sleep(0.05)
    assert sampler.peaks["idle"]["me"] < sampler.peaks["alloc"]["me"]


def test_default_rows_per_part():
    assert default_rows_per_part(10_000_000) == 1_000_000
    assert default_rows_per_part(200_000) == 25_000
    assert default_rows_per_part(8) == 1


@pytest.mark.integration
def test_s3_server_starts_with_buckets_and_restores_the_environment():
    before = os.environ.get("S3_ENDPOINT_URL")
    with _common.s3_server() as endpoint:
        from ml import storage
        from ml.settings import get_settings

        assert os.environ["S3_ENDPOINT_URL"] == endpoint
        assert get_settings().s3_endpoint_url == endpoint
        fs = storage.filesystem()
        fs.pipe_file("raw/bench/x.txt", b"hello")
        assert fs.cat_file("raw/bench/x.txt") == b"hello"
        assert set(get_settings().buckets) <= {b.rstrip("/") for b in fs.ls("")}
    assert os.environ.get("S3_ENDPOINT_URL") == before
