"""Feature sets: splits by date, the feature version, the committed set as `build_features`
returns it (`FeatureSet`), and reading a committed feature set back."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ml import storage
from ml.commit import forget_listings
from ml.errors import NotFoundError
from ml.features.transform import FEATURE_CODE_VERSION, FeatureTransform
from ml.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

    from ml.contracts import Contract

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
EVAL_SNAPSHOT = "eval"  # the joined raw rows of the test split, for champion/challenger scoring


class TooFewPartitions(NotFoundError):
    """Fewer validated partitions than a split by date needs (one per split)."""


@dataclass(frozen=True)
class FeatureSet:
    """A committed feature set. `manifest` is its whole manifest (splits, parts, inputs, columns,
    target), what `read_split`, `split_parts` and `load_transform` read."""

    ref: str  # s3://<features bucket>/<dataset>/<feature_version>
    feature_version: str
    rows: dict[str, int]  # per split
    reused: bool  # it existed already for the same inputs, contract, code and params
    eval_snapshot: str  # the joined raw rows of the test split
    manifest: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], *, reused: bool) -> FeatureSet:
        return cls(
            ref=manifest["ref"],
            feature_version=manifest["feature_version"],
            rows=manifest["rows"],
            reused=reused,
            eval_snapshot=manifest["eval_snapshot"],
            manifest=manifest,
        )


def split_partitions(partitions: list[str], fractions: dict[str, float]) -> dict[str, list[str]]:
    """Split sorted date partitions by time: train strictly before validation before test."""
    parts = sorted(partitions)
    if len(parts) < 3:
        raise TooFewPartitions(
            f"split by date needs at least 3 partitions (train, validation, test); got {len(parts)}: {parts}"
        )
    n_test = max(1, round(len(parts) * fractions.get("test", 0.15)))
    n_val = max(1, round(len(parts) * fractions.get("validation", 0.15)))
    n_train = len(parts) - n_val - n_test
    if n_train < 1:
        n_train, n_val, n_test = 1, 1, len(parts) - 2
    return {
        "train": parts[:n_train],
        "validation": parts[n_train : n_train + n_val],
        "test": parts[n_train + n_val :],
    }


def feature_version(inputs: list[str], contract: Contract, params: dict) -> str:
    """Hash of the input batches, the contract, the feature code and the params."""
    payload = json.dumps(
        {
            "inputs": sorted(inputs),
            "contract": contract.hash,
            "code": FEATURE_CODE_VERSION,
            "params": params,
        },
        sort_keys=True,
    )
    return "fv-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


def feature_set_ref(dataset: str, feature_version: str, settings=None) -> str:
    """Where a feature set of a dataset is committed (`s3://features/<dataset>/<version>`)."""
    return f"s3://{(settings or get_settings()).bucket('features')}/{dataset}/{feature_version}"


def newest_feature_set(dataset: str) -> str:
    """The ref of the feature set of `dataset` committed last (what a manual training run with
    the form's defaults takes); NotFoundError when none is committed."""
    s = get_settings()
    fs = storage.filesystem(s)
    base = f"{s.bucket('features')}/{dataset}"
    forget_listings(fs, base)
    manifests = [
        info
        for info in fs.find(base, maxdepth=2, detail=True).values()
        if info["name"].endswith(f"/{storage.MANIFEST}")
    ]
    if not manifests:
        raise NotFoundError(
            f"no committed feature set of {dataset} in s3://{base}: run preprocess_{dataset} "
            "first, or name one in the 'feature_set' param"
        )
    newest = max(manifests, key=lambda info: (info["LastModified"], info["name"]))
    return f"s3://{newest['name'].rsplit('/', 1)[0]}"


def read_feature_manifest(ref: str) -> dict:
    return storage.read_json(f"{ref.rstrip('/')}/{storage.MANIFEST}")


def load_transform(feature_manifest: dict) -> FeatureTransform:
    return FeatureTransform.from_json(
        storage.filesystem().cat_file(feature_manifest["transform"].removeprefix("s3://")).decode()
    )


def split_parts(feature_manifest: dict, split: str) -> list[dict]:
    """The parquet parts of one split (or the eval snapshot): `[{"path", "rows"}]`, in order,
    for reading shard by shard. Empty parts are left out."""
    parts = feature_manifest.get("parts", {}).get(split)
    if parts is None:
        raise KeyError(
            f"feature set {feature_manifest.get('ref')}: no split {split!r} in its manifest "
            f"(splits: {sorted(feature_manifest.get('parts', {}))})"
        )
    return [p for p in parts if p["rows"]]


def split_url(feature_manifest: dict, split: str) -> str:
    """The folder of one split: inside the committed attempt's folder (`data`), or directly
    under the feature set for one written before attempts."""
    return f"{feature_manifest.get('data', feature_manifest['ref'])}/{split}"


def read_split(feature_manifest: dict, split: str) -> pd.DataFrame:
    """One split of a feature set (or the eval snapshot) as a pandas frame (small sets only;
    stream `split_parts` for large ones)."""
    import pandas as pd

    options = get_settings().s3_storage_options()
    if "parts" not in feature_manifest:  # a feature set written before parts were listed
        url = (
            feature_manifest["eval_snapshot"]
            if split == EVAL_SNAPSHOT
            else f"{split_url(feature_manifest, split)}/"
        )
        return pd.read_parquet(url, storage_options=options)
    parts = split_parts(feature_manifest, split) or feature_manifest["parts"][split][:1]
    frames = [pd.read_parquet(p["path"], storage_options=options) for p in parts]
    return pd.concat(frames, ignore_index=True)
