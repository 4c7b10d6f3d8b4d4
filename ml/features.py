"""Features: joins to reference tables, derived columns, the target, and the fitted transform.

One implementation, `FeatureTransform.apply`, turns joined raw rows into model inputs; it runs on
Dask partitions during preprocessing and on pandas frames inside the registered model at
scoring time, so training and scoring see the same features.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from ml import contracts, storage
from ml.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

    from ml.contracts import Contract

log = logging.getLogger(__name__)

# Bump when the feature code changes what it produces: it is part of every feature version.
FEATURE_CODE_VERSION = "1"
SPLITS = ("train", "validation", "test")
EVAL_SNAPSHOT = "eval"  # the joined raw rows of the test split, for champion/challenger scoring
TARGET = "target"
OOV = 0  # categorical code of missing and out-of-vocabulary values


def _calendar(df: pd.DataFrame) -> pd.Series:
    import pandas as pd

    return pd.to_datetime({"year": df["year"], "month": df["month"], "day": df["day"]})


def _day_of_year_angle(df: pd.DataFrame):
    import numpy as np

    return 2 * np.pi * _calendar(df).dt.dayofyear.to_numpy() / 365.25


def _dep_hour(df):
    return (df["sched_dep_time"] // 100).astype("float64")


def _weekday(df):
    return _calendar(df).dt.weekday.astype("int64").astype(str)


def _doy_sin(df):
    import numpy as np

    return np.sin(_day_of_year_angle(df))


def _doy_cos(df):
    import numpy as np

    return np.cos(_day_of_year_angle(df))


# name -> (function of the joined raw frame, kind, the raw columns it reads)
DERIVED: dict[str, tuple[Any, str, tuple[str, ...]]] = {
    "dep_hour": (_dep_hour, "numeric", ("sched_dep_time",)),
    "weekday": (_weekday, "categorical", ("year", "month", "day")),
    "day_of_year_sin": (_doy_sin, "numeric", ("year", "month", "day")),
    "day_of_year_cos": (_doy_cos, "numeric", ("year", "month", "day")),
}


def feature_columns(contract: Contract) -> tuple[list[str], list[str]]:
    """(numeric, categorical) input columns of the model, derived ones included."""
    spec = contract.features
    numeric = list(spec.get("numeric", []))
    categorical = list(spec.get("categorical", []))
    for name in spec.get("derived", []):
        if name not in DERIVED:
            raise contracts.ContractError(
                f"{contract.path}: features.derived: unknown derived feature {name!r}; "
                f"known: {sorted(DERIVED)}"
            )
        (numeric if DERIVED[name][1] == "numeric" else categorical).append(name)
    return numeric, categorical


def row_keys(contract: Contract) -> list[str]:
    """The columns that identify a row (kept beside features and predictions)."""
    keys = list(contract.features.get("row_keys", []))
    unknown = [k for k in keys if k not in contract.column_names]
    if unknown:
        raise contracts.ContractError(
            f"{contract.path}: features.row_keys: {unknown} are not columns of the contract"
        )
    return keys


def add_derived(df: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    out = df.copy()
    for name in names:
        out[name] = DERIVED[name][0](df)
    return out


def add_target(df: pd.DataFrame, target: dict) -> pd.DataFrame:
    """The binary target; rows whose source value is missing get NA (the caller decides)."""
    out = df.copy()
    source = df[target["source_column"]]
    out[TARGET] = (source > target["threshold"]).astype("float32").where(source.notna())
    return out


def join_references(left, references: dict[str, pd.DataFrame], contract: Contract):
    """Left-join the contract's reference tables (pandas frames, broadcast) onto `left`.

    `left` is a pandas or a Dask frame; the small reference tables are plain pandas frames.
    """
    for join in contract.features.get("joins", []):
        on, columns = list(join["keys"]), list(join["columns"])
        ref = references[join["dataset"]][on + columns].drop_duplicates(subset=on, keep="last")
        left = left.merge(ref, on=on, how="left")
    return left


@dataclass
class FeatureTransform:
    """Fitted on the train split only: numeric imputation and scaling, categorical vocabularies."""

    numeric: list[str]
    categorical: list[str]
    derived: list[str]
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    vocab: dict[str, list[str]] = field(default_factory=dict)
    min_frequency: int = 1
    code_version: str = FEATURE_CODE_VERSION

    @classmethod
    def for_contract(cls, contract: Contract, min_frequency: int = 1) -> FeatureTransform:
        numeric, categorical = feature_columns(contract)
        return cls(
            numeric=numeric,
            categorical=categorical,
            derived=list(contract.features.get("derived", [])),
            min_frequency=min_frequency,
        )

    @property
    def input_columns(self) -> list[str]:
        """The raw (joined) columns the transform reads: the model's input signature."""
        columns = [c for c in self.numeric + self.categorical if c not in self.derived]
        for name in self.derived:
            columns += [c for c in DERIVED[name][2] if c not in columns]
        return columns

    @property
    def cardinalities(self) -> list[int]:
        """Embedding sizes: the vocabulary plus the OOV/missing bucket."""
        return [len(self.vocab[c]) + 1 for c in self.categorical]

    def fit(self, train) -> FeatureTransform:
        """Fit on the train split (a Dask or pandas frame of joined raw rows)."""
        import dask

        frame = (
            train.map_partitions(add_derived, self.derived)
            if hasattr(train, "dask")
            else add_derived(train, self.derived)
        )
        stats = [frame[self.numeric].mean(), frame[self.numeric].std()]
        counts = [frame[c].astype("string").value_counts() for c in self.categorical]
        means, stds, *counts = dask.compute(*stats, *counts)
        self.means = {c: _finite(means[c], 0.0) for c in self.numeric}
        self.stds = {c: _finite(stds[c], 1.0) or 1.0 for c in self.numeric}
        self.vocab = {
            c: sorted(str(v) for v, n in vc.items() if n >= self.min_frequency)
            for c, vc in zip(self.categorical, counts, strict=True)
        }
        return self

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        """Joined raw rows -> model inputs: `num__*` float32 and `cat__*` int64 columns."""
        import pandas as pd

        frame = add_derived(df, self.derived)
        out = {}
        for c in self.numeric:
            values = pd.to_numeric(frame[c], errors="coerce").astype("float64")
            scaled = (values.fillna(self.means[c]) - self.means[c]) / self.stds[c]
            out[f"num__{c}"] = scaled.astype("float32").to_numpy()
        for c in self.categorical:
            # Missing and unseen values both get code -1 from Categorical, i.e. OOV after the shift.
            codes = pd.Categorical(frame[c].astype("string"), categories=self.vocab[c]).codes
            out[f"cat__{c}"] = codes.astype("int64") + 1
        return pd.DataFrame(out, index=df.index)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureTransform:
        return cls(**json.loads(text))


def _finite(value: Any, default: float) -> float:
    import math

    value = float(value)
    return value if math.isfinite(value) else default


def model_frame(df: pd.DataFrame, transform: FeatureTransform, keep: list[str]) -> pd.DataFrame:
    """Model inputs plus the columns in `keep` (target, keys): the layout of feature parquet."""
    import pandas as pd

    return pd.concat(
        [df[keep].reset_index(drop=True), transform.apply(df).reset_index(drop=True)], axis=1
    )


def split_partitions(partitions: list[str], fractions: dict[str, float]) -> dict[str, list[str]]:
    """Split sorted date partitions by time: train strictly before validation before test."""
    parts = sorted(partitions)
    if len(parts) < 3:
        raise ValueError(
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


def _in_window(partition: str, date_from: str | None, date_to: str | None) -> bool:
    day = date.fromisoformat(partition.removeprefix("date="))
    return (not date_from or day >= date.fromisoformat(date_from)) and (
        not date_to or day <= date.fromisoformat(date_to)
    )


def build_features(
    dataset: str,
    date_from: str | None = None,
    date_to: str | None = None,
    min_frequency: int = 1,
) -> dict:
    """Validated batches in a date window -> train/validation/test features + fitted transform.

    Runs on the Dask cluster. Returns the feature set's reference; when a feature set of the
    same version exists it is reused, not recomputed.
    """
    from ml.cluster import dask_client

    s = get_settings()
    contract = contracts.load_contract(dataset)
    batches = {
        p: m
        for p, m in storage.latest_batches("validated", dataset).items()
        if _in_window(p, date_from, date_to)
    }
    if not batches:
        raise storage.BatchNotFoundError(
            f"no validated {dataset} batches between {date_from or 'the start'} and {date_to or 'the end'}"
        )
    reference_batches = {}
    for join in contract.features.get("joins", []):
        latest = storage.latest_batches("validated", join["dataset"])
        missing = sorted(set(batches) - set(latest))
        if missing:
            raise storage.BatchNotFoundError(
                f"join {dataset} -> {join['dataset']}: no validated {join['dataset']} batch for {missing}"
            )
        reference_batches[join["dataset"]] = [latest[p] for p in sorted(batches)]
    inputs = [m.ref for m in batches.values()] + [
        m.ref for ms in reference_batches.values() for m in ms
    ]
    params = {"date_from": date_from, "date_to": date_to, "min_frequency": min_frequency}
    version = feature_version(inputs, contract, params)
    fs = storage.filesystem(s)
    base = f"{s.bucket('features')}/{dataset}/{version}"
    manifest_path = f"{base}/{storage.MANIFEST}"
    if fs.exists(manifest_path):
        log.info(
            "feature set %s already exists for these inputs: reusing it, nothing recomputed",
            version,
        )
        return {**json.loads(fs.cat_file(manifest_path)), "reused": True}

    splits = split_partitions(list(batches), contract.split.get("fractions", {}))
    options = s.s3_storage_options()
    numeric, categorical = feature_columns(contract)
    keys = row_keys(contract)
    with dask_client(s):
        # Reference tables are small: read once, broadcast to every partition of the join.
        references = {
            name: storage.read_dask(ms, s).compute() for name, ms in reference_batches.items()
        }

        def joined(partitions: list[str]):
            frame = storage.read_dask([batches[p] for p in partitions], s)
            frame = join_references(frame, references, contract).map_partitions(
                add_target, contract.target
            )
            return frame.dropna(subset=[TARGET])

        frames = {name: joined(parts) for name, parts in splits.items()}
        transform = FeatureTransform.for_contract(contract, min_frequency=min_frequency).fit(
            frames["train"]
        )
        rows = {}
        for name, frame in frames.items():
            out = frame.map_partitions(model_frame, transform, [*keys, TARGET])
            out.to_parquet(
                f"s3://{base}/{name}/",
                storage_options=options,
                compression="zstd",
                write_index=False,
            )
            rows[name] = int(out.shape[0].compute())
        frames["test"].to_parquet(
            f"s3://{base}/{EVAL_SNAPSHOT}/",
            storage_options=options,
            compression="zstd",
            write_index=False,
        )
    fs.pipe_file(f"{base}/transform.json", transform.to_json().encode())
    manifest = {
        "dataset": dataset,
        "feature_version": version,
        "ref": f"s3://{base}",
        "contract_hash": contract.hash,
        "code_version": FEATURE_CODE_VERSION,
        "params": params,
        "inputs": inputs,
        "splits": splits,
        "rows": rows,
        "eval_snapshot": f"s3://{base}/{EVAL_SNAPSHOT}",
        "transform": f"s3://{base}/transform.json",
        "keys": keys,
        "numeric": numeric,
        "categorical": categorical,
    }
    fs.pipe_file(manifest_path, json.dumps(manifest, indent=2).encode())  # written last: the commit
    log.info("feature set %s: %s", version, rows)
    return {**manifest, "reused": False}


def read_feature_manifest(ref: str) -> dict:
    return storage.read_json(f"{ref.rstrip('/')}/{storage.MANIFEST}")


def load_transform(feature_manifest: dict) -> FeatureTransform:
    return FeatureTransform.from_json(
        storage.filesystem().cat_file(feature_manifest["transform"].removeprefix("s3://")).decode()
    )


def read_split(feature_manifest: dict, split: str) -> pd.DataFrame:
    """One split of a feature set (or the eval snapshot) as a pandas frame."""
    import pandas as pd

    url = (
        feature_manifest["eval_snapshot"]
        if split == EVAL_SNAPSHOT
        else f"{feature_manifest['ref']}/{split}/"
    )
    return pd.read_parquet(url, storage_options=get_settings().s3_storage_options())
