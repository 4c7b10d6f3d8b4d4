"""Drift: per-feature population stability (PSI) of a scored batch against the training data.

The reference is the train split of the feature set the scoring model was trained on (named by
the version's `feature_version` tag). Numeric model inputs are binned at the reference's
deciles, categorical ones by their vocabulary codes; a profile (bins and reference shares) is
computed once per model version and kept in `reports`. Batch counts are computed per Dask
partition and summed, so no batch is gathered in one process.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ml import storage
from ml.commit import forget_listings
from ml.features import sets
from ml.model_versions import trained_feature_set
from ml.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

    from ml.features.transform import FeatureTransform

log = logging.getLogger(__name__)

EPSILON = 1e-4  # share given to empty bins so the logarithm stays finite
QUANTILES = [i / 10 for i in range(1, 10)]


@dataclass(frozen=True)
class DriftSummary:
    """A scored batch's drift in short: its report (JSON in `reports`), the features over the
    threshold, and the largest PSI."""

    report: str
    drifted: tuple[str, ...]
    max_psi: float


def _profile_key(dataset: str, model_name: str, version: str) -> str:
    return f"drift/{dataset}/_reference/{model_name}-v{version}.json"


def reference_profile(dataset: str, model_name: str, version: str) -> dict[str, Any]:
    """Bins and reference shares of every model input, for one model version (cached)."""
    import numpy as np

    s = get_settings()
    key = _profile_key(dataset, model_name, version)
    fs = storage.filesystem(s)
    path = f"{s.bucket('reports')}/{key}"
    if fs.exists(path):
        return storage.read_json(f"s3://{path}")
    manifest = trained_feature_set(dataset, model_name, version)
    transform = sets.load_transform(manifest)
    train = sets.read_split(manifest, "train")
    profile: dict[str, Any] = {
        "dataset": dataset,
        "model_name": model_name,
        "model_version": version,
        "feature_version": manifest["feature_version"],
        "feature_set": manifest["ref"],
        "reference_rows": len(train),
        "features": {},
    }
    for c in transform.numeric:
        values = train[f"num__{c}"].to_numpy(dtype="float64")
        edges = sorted(set(np.quantile(values, QUANTILES).round(6).tolist())) if len(values) else []
        counts = _numeric_counts(values, edges)
        profile["features"][c] = {"kind": "numeric", "edges": edges, "shares": _shares(counts)}
    for c, size in zip(transform.categorical, transform.cardinalities, strict=True):
        codes = train[f"cat__{c}"].to_numpy(dtype="int64")
        counts = np.bincount(np.clip(codes, 0, size - 1), minlength=size).tolist()
        profile["features"][c] = {"kind": "categorical", "size": size, "shares": _shares(counts)}
    storage.write_json("reports", key, profile, s)
    return profile


def _numeric_counts(values, edges: list[float]) -> list[int]:
    import numpy as np

    bins = np.searchsorted(np.asarray(edges, dtype="float64"), values, side="right")
    return np.bincount(bins, minlength=len(edges) + 1).tolist()


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def batch_counts(
    df: pd.DataFrame, transform: FeatureTransform, profile: dict[str, Any]
) -> dict[str, list[int]]:
    """Bin counts of one partition of joined raw rows (through the model's transform)."""
    import numpy as np

    inputs = transform.apply(df)
    out = {}
    for c, spec in profile["features"].items():
        if spec["kind"] == "numeric":
            out[c] = _numeric_counts(inputs[f"num__{c}"].to_numpy(dtype="float64"), spec["edges"])
        else:
            codes = np.clip(inputs[f"cat__{c}"].to_numpy(dtype="int64"), 0, spec["size"] - 1)
            out[c] = np.bincount(codes, minlength=spec["size"]).tolist()
    return out


def add_counts(parts: list[dict[str, list[int]]]) -> dict[str, list[int]]:
    total: dict[str, list[int]] = {}
    for part in parts:
        for c, counts in part.items():
            total[c] = [a + b for a, b in zip(total.get(c, [0] * len(counts)), counts, strict=True)]
    return total


def psi(expected: list[float], actual_counts: list[int]) -> float:
    """Population stability index of observed counts against expected shares."""
    actual = _shares(actual_counts)
    value = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, EPSILON), max(a, EPSILON)
        value += (a - e) * math.log(a / e)
    return value


def report(
    profile: dict[str, Any],
    counts: dict[str, list[int]],
    *,
    partition: str,
    predictions_ref: str,
    threshold: float,
) -> DriftSummary:
    """PSI per feature; the JSON report and an SVG chart in `reports`; a warning over threshold.

    The report document keeps the predictions' spelling of the version (`model_version`)."""
    rows = sum(next(iter(counts.values()), []))
    scores = {
        c: round(psi(spec["shares"], counts[c]), 6) for c, spec in profile["features"].items()
    }
    drifted = sorted(c for c, v in scores.items() if v > threshold)
    dataset, model_name, version = (
        profile["dataset"],
        profile["model_name"],
        profile["model_version"],
    )
    base = f"drift/{dataset}/{partition}/model={version}"
    doc = {
        "dataset": dataset,
        "partition": partition,
        "model_name": model_name,
        "model_version": version,
        "feature_version": profile["feature_version"],
        "reference": profile["feature_set"],
        "reference_rows": profile["reference_rows"],
        "rows": rows,
        "predictions": predictions_ref,
        "metric": "psi",
        "threshold": threshold,
        "psi": scores,
        "drifted": drifted,
        "max_psi": max(scores.values(), default=0.0),
        "chart": f"s3://{get_settings().bucket('reports')}/{base}.svg",
    }
    storage.filesystem().pipe_file(doc["chart"].removeprefix("s3://"), chart_svg(doc).encode())
    doc["report"] = storage.write_json("reports", f"{base}.json", doc)
    if drifted:
        log.warning(
            "drift in %s %s against the training data of %s v%s: %s (PSI > %s); report %s",
            dataset,
            partition,
            model_name,
            version,
            ", ".join(f"{c}={scores[c]:.3f}" for c in drifted),
            threshold,
            doc["report"],
        )
    return DriftSummary(report=doc["report"], drifted=tuple(drifted), max_psi=doc["max_psi"])


def recent_reports(dataset: str, limit: int = 20) -> list[dict[str, Any]]:
    """The newest drift reports of a dataset (newest day first), as `report` wrote them."""
    s = get_settings()
    fs = storage.filesystem(s)
    base = f"{s.bucket('reports')}/drift/{dataset}"
    forget_listings(fs, base)
    paths = sorted(fs.glob(f"{base}/*/model=*.json"), reverse=True)
    return [storage.read_json(f"s3://{path}", s) for path in paths[:limit]]


def chart_svg(doc: dict[str, Any]) -> str:
    """A horizontal bar chart of PSI per feature, the threshold as a red line (plain SVG)."""
    from html import escape

    items = sorted(doc["psi"].items(), key=lambda kv: -kv[1])
    width, left, bar_h, top = 640, 160, 18, 40
    height = top + bar_h * len(items) + 30
    scale_max = max([doc["threshold"] * 1.5, *[v for _, v in items]])
    px = (width - left - 20) / scale_max if scale_max else 1.0
    lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="10" y="20" font-size="14">PSI of {escape(doc["dataset"])} '
        f"{escape(doc['partition'])} vs training data of {escape(doc['model_name'])} "
        f"v{escape(str(doc['model_version']))}</text>",
    ]
    for i, (name, value) in enumerate(items):
        y = top + i * bar_h
        color = "#d62728" if value > doc["threshold"] else "#1f77b4"
        lines.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{escape(name)}</text>')
        lines.append(
            f'<rect x="{left}" y="{y + 2}" width="{max(value * px, 1):.1f}" '
            f'height="{bar_h - 4}" fill="{color}"/>'
        )
        lines.append(
            f'<text x="{left + max(value * px, 1) + 4:.1f}" y="{y + 13}">{value:.3f}</text>'
        )
    x = left + doc["threshold"] * px
    lines.append(
        f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 24}" '
        'stroke="red" stroke-dasharray="4"/>'
    )
    lines.append(
        f'<text x="{x:.1f}" y="{height - 8}" fill="red">threshold {doc["threshold"]}</text>'
    )
    lines.append("</svg>")
    return "\n".join(lines)
