"""Reading batches for the build: parts grouped by the rows their manifests list."""

from __future__ import annotations

import pytest

from ml import storage
from ml.features import build

pytestmark = pytest.mark.unit


def test_parts_are_grouped_by_rows_from_manifests():
    def manifest(day, rows, parts=1):
        return storage.Manifest(
            zone="validated",
            bucket="validated",
            dataset="flights",
            partition=f"date={day}",
            batch_id="b",
            parts=[{"name": f"part-{i:05d}.parquet", "rows": rows // parts} for i in range(parts)],
            rows=rows,
            schema={},
            source="",
            contract_hash="",
            extra={},
            created_at="",
        )

    ms = [manifest(f"2013-01-0{d}", 300) for d in range(1, 8)]
    groups = build.group_parts(ms, target_rows=1000)
    assert [len(g) for g in groups] == [3, 3, 1]
    assert [u for g in groups for u in g] == [u for m in ms for u in m.part_urls]
    big = build.group_parts([manifest("2013-01-01", 5000, parts=2)], target_rows=1000)
    assert [len(g) for g in big] == [1, 1]  # a part over the target is a partition of its own
    # Tiny daily parts (weather) are also capped by count, so every worker reads some.
    capped = build.group_parts(ms, target_rows=10**6, max_parts=2)
    assert [len(g) for g in capped] == [2, 2, 2, 1]
