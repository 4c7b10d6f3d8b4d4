"""Features: joins to reference tables, derived columns, the target, and the fitted transform.

One implementation, `FeatureTransform.apply`, turns joined raw rows into model inputs; it runs on
Dask partitions during preprocessing and on pandas frames inside the registered model at
scoring time, so training and scoring see the same features.

Reference tables come in two kinds (contract `features.joins` / `features.lookups`): partitioned
like the dataset (weather: the same days are joined) or snapshots (planes, airports: the latest
validated snapshot). `build_features` is the preprocessing stage on the Dask cluster.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ml import contracts, storage
from ml.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

    from ml.contracts import Contract

log = logging.getLogger(__name__)

# Bump when the feature code changes what it produces: it is part of every feature version.
FEATURE_CODE_VERSION = "3"
SPLITS = ("train", "validation", "test")
EVAL_SNAPSHOT = "eval"  # the joined raw rows of the test split, for champion/challenger scoring
TARGET = "target"
OOV = 0  # categorical code of missing and out-of-vocabulary values
DEFAULT_MIN_FREQUENCY = 5  # a category value seen fewer times in train goes to the OOV bucket
# Rows per partition of the feature parquet (and of the Dask frames behind it): daily batches
# are grouped up to about this many rows, so tasks and files are neither tiny nor huge.
TARGET_ROWS_PER_PARTITION = 500_000
# A reference table up to this many rows is read into one pandas frame and broadcast to every
# partition of the join; a larger one stays a Dask frame and Dask shuffles both sides.
BROADCAST_MAX_ROWS = 2_000_000
# Parts per read task of a broadcast reference (weather has one small part per day).
REFERENCE_PARTS = 32
TARGET_MISSING = ("drop",)  # what `target.missing` may say


def _calendar(df: pd.DataFrame):
    """The rows' dates from year, month, day as numpy `datetime64[D]`, and a mask of the rows
    that have all three (vectorized: pandas' `to_datetime` of a dict is ~10x slower)."""
    import numpy as np

    y, m, d = (df[c].to_numpy(dtype="float64", na_value=np.nan) for c in ("year", "month", "day"))
    ok = ~(np.isnan(y) | np.isnan(m) | np.isnan(d))
    months = np.where(ok, (y - 1970) * 12 + (m - 1), 0).astype("int64").astype("datetime64[M]")
    days = months.astype("datetime64[D]") + np.where(ok, d - 1, 0).astype("timedelta64[D]")
    return days, ok


def _day_of_year_angle(df: pd.DataFrame):
    import numpy as np

    days, ok = _calendar(df)
    day_of_year = (days - days.astype("datetime64[Y]").astype("datetime64[D]")).astype("int64") + 1
    return np.where(ok, 2 * np.pi * day_of_year / 365.25, np.nan)


def _minute_of_day_angle(df: pd.DataFrame):
    import numpy as np

    hhmm = df["sched_dep_time"].to_numpy(dtype="float64")
    return 2 * np.pi * ((hhmm // 100) * 60 + hhmm % 100) / 1440.0


def _dep_hour(df):
    return (df["sched_dep_time"] // 100).astype("float64")


def _dep_time_sin(df):
    import numpy as np

    return np.sin(_minute_of_day_angle(df))


def _dep_time_cos(df):
    import numpy as np

    return np.cos(_minute_of_day_angle(df))


@lru_cache(maxsize=1)
def _digits():
    import numpy as np

    return np.array([str(i) for i in range(32)], dtype=object)


def _small_ints_as_text(values, ok, index):
    """Integers 0..31 as their decimal text ("3"), missing where not `ok`."""
    import numpy as np
    import pandas as pd

    codes = np.where(ok, values, 0).astype("int64")
    return pd.Series(np.where(ok, _digits()[codes], None), index=index, dtype="string")


def _weekday(df):
    days, ok = _calendar(df)
    weekday = (days.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    return _small_ints_as_text(weekday, ok, df.index)


def _month_of_year(df):
    import numpy as np

    month = df["month"].to_numpy(dtype="float64", na_value=np.nan)
    return _small_ints_as_text(month, ~np.isnan(month), df.index)


def _doy_sin(df):
    import numpy as np

    return np.sin(_day_of_year_angle(df))


def _doy_cos(df):
    import numpy as np

    return np.cos(_day_of_year_angle(df))


def _route(df):
    return df["origin"].astype("string") + "-" + df["dest"].astype("string")


def _plane_age(df):
    import pandas as pd

    # Years since the plane was built; missing when the tail number or its year is unknown.
    built = pd.to_numeric(df["plane_year"], errors="coerce").astype("float64")
    return df["year"].astype("float64") - built


# name -> (function of the joined raw frame, kind, the raw columns it reads)
DERIVED: dict[str, tuple[Any, str, tuple[str, ...]]] = {
    "dep_hour": (_dep_hour, "numeric", ("sched_dep_time",)),
    "dep_time_sin": (_dep_time_sin, "numeric", ("sched_dep_time",)),
    "dep_time_cos": (_dep_time_cos, "numeric", ("sched_dep_time",)),
    "weekday": (_weekday, "categorical", ("year", "month", "day")),
    "month_of_year": (_month_of_year, "categorical", ("month",)),
    "day_of_year_sin": (_doy_sin, "numeric", ("year", "month", "day")),
    "day_of_year_cos": (_doy_cos, "numeric", ("year", "month", "day")),
    "route": (_route, "categorical", ("origin", "dest")),
    "plane_age": (_plane_age, "numeric", ("year", "plane_year")),
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
        kind = numeric if DERIVED[name][1] == "numeric" else categorical
        if name not in kind:
            kind.append(name)
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
    return df.assign(**derived_columns(df, names))


def derived_columns(df: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    """The derived features of `df`, by name (without copying `df`)."""
    return {name: DERIVED[name][0](df) for name in names}


def add_target(df: pd.DataFrame, target: dict) -> pd.DataFrame:
    """The binary target; rows whose source value is missing get NA (the caller decides).

    For flights the missing source value is a cancelled flight (no `dep_delay`): see
    `target.missing` in the contract; `build_features` drops those rows from every split.
    """
    source = df[target["source_column"]]
    # `assign` copies no column (copy-on-write): a full `copy()` here was a whole-frame copy.
    return df.assign(
        **{TARGET: (source > target["threshold"]).astype("float32").where(source.notna())}
    )


def with_target(df: pd.DataFrame, target: dict) -> pd.DataFrame:
    """The rows that have a target value, with the target added (`target.missing: drop`).

    One row filter before anything else: the joins then work on the kept rows only.
    """
    return add_target(df[df[target["source_column"]].notna()], target)


@dataclass(frozen=True)
class Reference:
    """One reference table joined to a dataset: a `joins` entry (partitioned like the dataset:
    the same partitions are joined) or a `lookups` entry (a snapshot table, joined whole)."""

    dataset: str
    keys: tuple[str, ...]
    right_keys: tuple[str, ...]
    columns: tuple[str, ...]
    prefix: str = ""
    snapshot: bool = False

    @property
    def joined_columns(self) -> list[str]:
        return [self.prefix + c for c in self.columns]

    def prepare(self, table):
        """The reference's key and value columns, renamed as they appear after the join,
        integers as float64 (a left join's misses make them float anyway: one dtype always)."""
        frame = table[list(self.right_keys) + list(self.columns)]
        frame = frame.rename(
            columns={
                **dict(zip(self.right_keys, self.keys, strict=True)),
                **{c: self.prefix + c for c in self.columns},
            }
        )
        ints = [c for c in self.joined_columns if str(frame[c].dtype).lower().startswith("int")]
        if ints:
            frame = frame.astype(dict.fromkeys(ints, "float64"))
        return frame.drop_duplicates(subset=list(self.keys), keep="last")


def references_of(contract: Contract) -> list[Reference]:
    """The contract's `features.joins` and `features.lookups`, in join order."""
    out = []
    for kind in ("joins", "lookups"):
        for spec in contract.features.get(kind, []):
            keys = tuple(spec["keys"])
            out.append(
                Reference(
                    dataset=spec["dataset"],
                    keys=keys,
                    right_keys=tuple(spec.get("right_keys", keys)),
                    columns=tuple(spec["columns"]),
                    prefix=spec.get("prefix", ""),
                    snapshot=kind == "lookups",
                )
            )
    return out


def reference_datasets(contract: Contract) -> list[str]:
    """Every dataset the contract's features join (joins first, then lookups)."""
    return [r.dataset for r in references_of(contract)]


def snapshot_manifest(dataset: str, settings=None, latest=None) -> storage.Manifest:
    """The latest validated snapshot of a lookup table (from `latest`, its latest batches, when
    given); a clear error when there is none."""
    if latest is None:
        latest = storage.latest_batches("validated", dataset, settings)
    manifest = latest.get(contracts.SNAPSHOT)
    if manifest is None:
        raise storage.BatchNotFoundError(
            f"no validated snapshot of the reference table {dataset!r} "
            f"(validated/{dataset}/{contracts.SNAPSHOT}/): run ingest_{dataset} first"
        )
    return manifest


@lru_cache(maxsize=16)
def _snapshot_rows(ref: str) -> pd.DataFrame:
    return storage.read_batch(storage.read_manifest(ref))


def load_lookups(contract: Contract, settings=None) -> dict[str, pd.DataFrame]:
    """The latest validated snapshot of each lookup table of the contract (pandas frames)."""
    out = {}
    for ref in references_of(contract):
        if ref.snapshot:
            out[ref.dataset] = _snapshot_rows(snapshot_manifest(ref.dataset, settings).ref)
    return out


def join_references(left, references: dict[str, Any], contract: Contract):
    """Left-join the contract's reference tables onto `left` (a pandas or a Dask frame).

    A reference given as a pandas frame is broadcast to every partition of a Dask `left`; one
    given as a Dask frame is joined by a Dask shuffle. A lookup table (`features.lookups`) that
    is not in `references` is read from its latest validated snapshot; a missing partitioned
    reference (`features.joins`) is an error.
    """
    specs = references_of(contract)
    if any(r.snapshot and r.dataset not in references for r in specs):
        references = {**load_lookups(contract), **references}
    for ref in specs:
        if ref.dataset not in references:
            raise KeyError(
                f"join {contract.dataset} -> {ref.dataset}: no {ref.dataset} rows were given"
            )
    names = list(left.columns)
    for ref in specs:
        clash = [c for c in ref.joined_columns if c in names]
        if clash:
            raise contracts.ContractError(
                f"{contract.path}: join {contract.dataset} -> {ref.dataset}: column(s) {clash} "
                f"are already in the rows; give the join a `prefix`"
            )
        names += ref.joined_columns
    # Consecutive broadcast references are joined in one pass per partition; a Dask reference
    # (too large to broadcast) is joined by a Dask merge, which shuffles both sides.
    batch: list[tuple[Reference, Any]] = []
    for ref in specs:
        right = references[ref.dataset]
        if hasattr(right, "dask"):
            left = _join_broadcast(left, batch)
            batch = []
            left = left.merge(ref.prepare(right), on=list(ref.keys), how="left")
        else:
            batch.append((ref, ref.prepare(right)))
    return _join_broadcast(left, batch)


def _join_broadcast(left, prepared: list[tuple[Reference, pd.DataFrame]]):
    """Left-join prepared pandas references onto a pandas or (partition-wise) a Dask frame."""
    if not prepared:
        return left
    if hasattr(left, "dask"):
        from dask import delayed

        meta = _left_join(left._meta, prepared)
        # One delayed object: the tables travel once per worker, not once per partition.
        tables = delayed(prepared, traverse=False)
        return left.map_partitions(_left_join, tables, meta=meta, enforce_metadata=False)
    return _left_join(left, prepared)


def _left_join(left: pd.DataFrame, prepared: list[tuple[Reference, pd.DataFrame]]) -> pd.DataFrame:
    """Each reference's value columns for the rows of `left` (a many-to-one left join: the
    references are unique on their keys, so every row of `left` stays once, in order).

    Only the key columns go through `merge` (to find the matching row of the reference); the
    value columns are then taken by position, so the wide left frame is never copied.
    """
    import numpy as np
    import pandas as pd

    added = {}
    for ref, right in prepared:
        keys = list(ref.keys)
        position = pd.Series(np.arange(len(right), dtype="int64"), name="__position__")
        found = left[keys].merge(
            pd.concat([right[keys].reset_index(drop=True), position], axis=1),
            on=keys,
            how="left",
        )["__position__"]
        if len(found) != len(left):  # `prepare` keeps one row per key: cannot happen
            raise AssertionError(f"join -> {ref.dataset}: {len(found)} rows for {len(left)}")
        where = found.fillna(-1).to_numpy(dtype="int64")
        for c in ref.joined_columns:
            values = right[c].array.take(where, allow_fill=True)
            added[c] = pd.Series(values, index=left.index, name=c)
    return left.assign(**added)


@dataclass
class FeatureTransform:
    """Fitted on the train split only: numeric imputation and scaling, categorical vocabularies."""

    numeric: list[str]
    categorical: list[str]
    derived: list[str]
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    vocab: dict[str, list[str]] = field(default_factory=dict)
    min_frequency: int = DEFAULT_MIN_FREQUENCY
    code_version: str = FEATURE_CODE_VERSION

    @classmethod
    def for_contract(
        cls, contract: Contract, min_frequency: int = DEFAULT_MIN_FREQUENCY
    ) -> FeatureTransform:
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
        """Fit on the train split (a Dask or pandas frame of joined raw rows).

        One pass: each partition gives its counts, means and squared deviations (numeric) and
        its value counts (categorical); they are combined exactly (Chan et al.'s pairwise
        update), so a Dask fit equals the pandas fit up to float summation order.
        """
        if hasattr(train, "dask"):
            import dask

            parts = dask.compute(*[dask.delayed(self._stats)(p) for p in train.to_delayed()])
        else:
            parts = [self._stats(train)]
        total = _combine_stats(parts)
        self.means, self.stds = {}, {}
        for c in self.numeric:
            n, mean, m2 = total["numeric"][c]
            self.means[c] = _finite(mean if n else float("nan"), 0.0)
            self.stds[c] = _finite((m2 / (n - 1)) ** 0.5 if n > 1 else float("nan"), 1.0) or 1.0
        self.vocab = {
            c: sorted(
                str(v) for v, n in total["counts"].get(c, {}).items() if n >= self.min_frequency
            )
            for c in self.categorical
        }
        return self

    def _stats(self, df: pd.DataFrame) -> dict:
        """One partition's statistics for `fit`: (count, mean, sum of squared deviations) of
        each numeric column and the value counts of each categorical one (missing left out)."""
        import numpy as np

        derived = derived_columns(df, self.derived)
        numeric = {}
        for c in self.numeric:
            values = _as_float(derived[c] if c in derived else df[c])
            values = values[~np.isnan(values)]
            mean = float(values.mean()) if len(values) else 0.0
            numeric[c] = (len(values), mean, float(((values - mean) ** 2).sum()))
        counts = {}
        for c in self.categorical:
            values = derived[c] if c in derived else df[c]
            counts[c] = values.astype("string").value_counts().to_dict()
        return {"numeric": numeric, "counts": counts}

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        """Joined raw rows -> model inputs: `num__*` float32 and `cat__*` int64 columns."""
        import pandas as pd

        missing = [c for c in self.input_columns if c not in df.columns]
        if missing:
            raise KeyError(
                f"feature transform: the rows lack input column(s) {missing}; it reads "
                f"{self.input_columns} (joined raw rows: see features.join_references)"
            )
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        derived = derived_columns(df, self.derived)

        def column(c: str):
            return derived[c] if c in derived else df[c]

        out = {}
        for c in self.numeric:
            values = _as_float(column(c))
            filled = np.where(np.isnan(values), self.means[c], values)
            out[f"num__{c}"] = ((filled - self.means[c]) / self.stds[c]).astype("float32")
        vocab = self._vocab_arrays()
        for c in self.categorical:
            # Missing and unseen values both get no index (-1), i.e. OOV code 0 after the shift.
            values = column(c)
            text = values if isinstance(values, pd.Series) else pd.Series(values, index=df.index)
            found = pc.index_in(pa.array(text.astype("string"), type=pa.string()), vocab[c])
            out[f"cat__{c}"] = (
                found.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64") + 1
            )
        return pd.DataFrame(out, index=df.index)

    def _vocab_arrays(self) -> dict[str, Any]:
        """The vocabularies as pyarrow arrays (for `pc.index_in`), built once per transform."""
        import pyarrow as pa

        cached = self.__dict__.get("_vocab_pa")
        if cached is None or cached[0] is not self.vocab:
            arrays = {c: pa.array(self.vocab[c], type=pa.string()) for c in self.categorical}
            cached = (self.vocab, arrays)
            self.__dict__["_vocab_pa"] = cached
        return cached[1]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureTransform:
        return cls(**json.loads(text))


def _as_float(values) -> Any:
    """A numeric input column as a float64 numpy array (NaN for missing and non-numbers)."""
    import numpy as np
    import pandas as pd

    if isinstance(values, np.ndarray):
        return values.astype("float64")
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        values = pd.to_numeric(values, errors="coerce")
    return values.to_numpy(dtype="float64", na_value=np.nan)


def _combine_stats(parts: list[dict]) -> dict:
    """The fit statistics of the union of partitions (numeric: Chan et al.'s parallel update)."""
    numeric: dict[str, tuple[int, float, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    for part in parts:
        for c, (nb, mb, m2b) in part["numeric"].items():
            if not nb:
                continue
            na, ma, m2a = numeric.get(c, (0, 0.0, 0.0))
            n = na + nb
            delta = mb - ma
            numeric[c] = (n, ma + delta * nb / n, m2a + m2b + delta * delta * na * nb / n)
        for c, vc in part["counts"].items():
            into = counts.setdefault(c, {})
            for value, n in vc.items():
                into[value] = into.get(value, 0) + int(n)
    for c in parts[0]["numeric"] if parts else ():
        numeric.setdefault(c, (0, 0.0, 0.0))
    return {"numeric": numeric, "counts": counts}


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


def group_parts(
    manifests: list[storage.Manifest],
    target_rows: int = TARGET_ROWS_PER_PARTITION,
    max_parts: int | None = None,
) -> list[list[str]]:
    """The manifests' part URLs in order, grouped into runs of about `target_rows` rows (and at
    most `max_parts` parts): one Dask partition each. Row counts come from the manifests,
    nothing is read."""
    groups: list[list[str]] = []
    rows = 0
    for m in manifests:
        per_part = m.rows / max(len(m.parts), 1)
        for url in m.part_urls:
            if (
                not groups
                or (rows + per_part > target_rows and rows > 0)
                or len(groups[-1]) == max_parts
            ):
                groups.append([])
                rows = 0
            groups[-1].append(url)
            rows += per_part
    return groups


def _read_group(urls: list[str], options: dict) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    paths = [u.removeprefix("s3://") for u in urls]
    blobs = fs.cat(paths, on_error="raise")  # fetched concurrently: small daily parts add up
    # One arrow table, converted to pandas once: a pandas frame per daily part costs more than
    # parsing it (2x for 32 weather days).
    tables = [pq.read_table(pa.BufferReader(blobs[p])) for p in paths]
    if len(tables) > 1:
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()
    return tables[0].to_pandas()


def read_grouped(
    manifests: list[storage.Manifest], settings=None, target_rows=None, max_parts=None
):
    """Committed batches as a lazy Dask frame of partitions of about `target_rows` rows (and at
    most `max_parts` parts)."""
    import dask.dataframe as dd

    s = settings or get_settings()
    groups = group_parts(manifests, target_rows or TARGET_ROWS_PER_PARTITION, max_parts)
    if not groups:
        raise storage.BatchNotFoundError("no committed parts to read")
    options = s.s3_storage_options()
    meta = _read_group(groups[0][:1], options).iloc[:0]
    return dd.from_map(
        _read_group,
        groups,
        options=options,
        meta=meta,
        label="read-batches",
        enforce_metadata=False,
    )


def _feature_inputs(
    dataset: str, contract: Contract, date_from: str | None, date_to: str | None
) -> tuple[dict[str, storage.Manifest], dict[str, list[storage.Manifest]]]:
    """The validated batches of the window, and each reference table's batches to join."""
    names = dict.fromkeys([dataset, *reference_datasets(contract)])
    listed = {name: storage.latest_batches("validated", name) for name in names}  # once each
    batches = {p: m for p, m in listed[dataset].items() if _in_window(p, date_from, date_to)}
    if not batches:
        raise storage.BatchNotFoundError(
            f"no validated {dataset} batches between {date_from or 'the start'} and "
            f"{date_to or 'the end'}"
        )
    references: dict[str, list[storage.Manifest]] = {}
    for ref in references_of(contract):
        latest = listed[ref.dataset]
        if ref.snapshot:
            references[ref.dataset] = [snapshot_manifest(ref.dataset, latest=latest)]
            continue
        missing = sorted(set(batches) - set(latest))
        if missing:
            raise storage.BatchNotFoundError(
                f"join {dataset} -> {ref.dataset}: no validated {ref.dataset} batch for {missing}"
            )
        references[ref.dataset] = [latest[p] for p in sorted(batches)]
    return batches, references


def _check_target(contract: Contract) -> dict:
    target = contract.target
    for key in ("source_column", "threshold"):
        if key not in target:
            raise contracts.ContractError(f"{contract.path}: target.{key} is required for features")
    if target.get("missing", "drop") not in TARGET_MISSING:
        raise contracts.ContractError(
            f"{contract.path}: target.missing: {target['missing']!r} is not one of "
            f"{list(TARGET_MISSING)} (rows without a target value are dropped from the splits)"
        )
    return target


def build_features(
    dataset: str,
    date_from: str | None = None,
    date_to: str | None = None,
    min_frequency: int = DEFAULT_MIN_FREQUENCY,
) -> dict:
    """Validated batches in a date window -> train/validation/test features + fitted transform.

    Runs on the Dask cluster: no process holds the dataset. Daily batches are read in groups of
    about `TARGET_ROWS_PER_PARTITION` rows, rows without a target are dropped, reference tables
    are broadcast (or shuffled when large). The train split is read and joined once and kept on
    the workers (pruned to the columns the features need) while the transform is fitted on it;
    then the splits and the eval snapshot are written (zstd parquet). Returns the feature
    manifest plus `reused`; when a feature set of the same version exists it is reused, not
    recomputed.
    """
    import dask

    from ml.cluster import dask_client

    s = get_settings()
    contract = contracts.load_contract(dataset)
    target = _check_target(contract)
    batches, reference_batches = _feature_inputs(dataset, contract, date_from, date_to)
    inputs = [m.ref for m in batches.values()] + [
        m.ref for ms in reference_batches.values() for m in ms
    ]
    params = {"date_from": date_from, "date_to": date_to, "min_frequency": min_frequency}
    version = feature_version(inputs, contract, params)
    fs = storage.filesystem(s)
    base = f"{s.bucket('features')}/{dataset}/{version}"
    manifest_path = f"{base}/{storage.MANIFEST}"
    fs.invalidate_cache(base)
    if fs.exists(manifest_path):
        log.info(
            "feature set %s already exists for these inputs, contract, code and params: "
            "reusing it, nothing recomputed",
            version,
        )
        return {**json.loads(fs.cat_file(manifest_path)), "reused": True}
    log.info("feature set %s: computing from %s input batches", version, len(inputs))
    if fs.exists(base):
        fs.rm(base, recursive=True)  # an unfinished earlier attempt: garbage, never data

    splits = split_partitions(list(batches), contract.split.get("fractions", {}))
    options = s.s3_storage_options()
    numeric, categorical = feature_columns(contract)
    keys = row_keys(contract)
    transform = FeatureTransform.for_contract(contract, min_frequency=min_frequency)
    kept = [*keys, TARGET]
    with dask_client(s):
        references = {}
        for name, ms in reference_batches.items():
            if sum(m.rows for m in ms) <= BROADCAST_MAX_ROWS:
                # Small: one pandas copy, broadcast to every partition. Read in groups of a
                # few parts so that every worker fetches some (daily parts are tiny).
                references[name] = read_grouped(ms, s, max_parts=REFERENCE_PARTS).compute()
            else:
                references[name] = read_grouped(ms, s)

        def joined(partitions: list[str]):
            frame = read_grouped([batches[p] for p in sorted(partitions)], s)
            # Cancelled flights have no target: dropped first (see target.missing).
            frame = frame.map_partitions(with_target, target)
            return join_references(frame, references, contract)

        frames = {name: joined(parts) for name, parts in splits.items()}
        # The train split is read and joined once, for the fit and for the write: its rows,
        # pruned to the columns the features need, stay on the workers in between (Dask spills
        # them to the workers' disks past their memory target).
        needed = list(dict.fromkeys(kept + transform.input_columns))
        train = frames.pop("train")[needed].persist()
        transform.fit(train)
        writes = {}
        for name, frame in {"train": train, **frames}.items():
            meta = model_frame(frame._meta, transform, kept)
            out = frame.map_partitions(model_frame, transform, kept, meta=meta)
            writes[name] = _write_parts(out, f"s3://{base}/{name}", options)
        writes[EVAL_SNAPSHOT] = _write_parts(
            frames["test"], f"s3://{base}/{EVAL_SNAPSHOT}", options
        )
        written = dict(zip(writes, dask.compute(*writes.values()), strict=True))
        del train, frames
    parts = {name: written[name].to_dict("records") for name in (*SPLITS, EVAL_SNAPSHOT)}
    rows = {name: sum(p["rows"] for p in parts[name]) for name in SPLITS}
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
        "parts": parts,
        "eval_snapshot": f"s3://{base}/{EVAL_SNAPSHOT}",
        "transform": f"s3://{base}/transform.json",
        "keys": keys,
        "numeric": numeric,
        "categorical": categorical,
        "target": {**target, "column": TARGET},
    }
    fs.pipe_file(manifest_path, json.dumps(manifest, indent=2).encode())  # written last: the commit
    log.info("feature set %s written: rows %s", version, rows)
    return {**manifest, "reused": False}


def _write_parts(frame, url: str, options: dict):
    """A lazy write of each partition as `url/part-<i>.parquet` (zstd, in partition order; empty
    partitions too, so every split has a schema); computes to a frame of `path`, `rows`."""
    import pandas as pd

    meta = pd.DataFrame({"path": pd.Series(dtype="str"), "rows": pd.Series(dtype="int64")})
    return frame.map_partitions(_write_part, url, options, meta=meta, enforce_metadata=False)


def _write_part(df: pd.DataFrame, url: str, options: dict, partition_info=None):
    import pandas as pd

    path = f"{url}/part-{partition_info['number']:05d}.parquet"
    df.to_parquet(path, storage_options=options, compression="zstd", index=False)
    return pd.DataFrame({"path": [path], "rows": [len(df)]})


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


def read_split(feature_manifest: dict, split: str) -> pd.DataFrame:
    """One split of a feature set (or the eval snapshot) as a pandas frame (small sets only;
    stream `split_parts` for large ones)."""
    import pandas as pd

    options = get_settings().s3_storage_options()
    if "parts" not in feature_manifest:  # a feature set written before parts were listed
        url = (
            feature_manifest["eval_snapshot"]
            if split == EVAL_SNAPSHOT
            else f"{feature_manifest['ref']}/{split}/"
        )
        return pd.read_parquet(url, storage_options=options)
    parts = split_parts(feature_manifest, split) or feature_manifest["parts"][split][:1]
    frames = [pd.read_parquet(p["path"], storage_options=options) for p in parts]
    return pd.concat(frames, ignore_index=True)
