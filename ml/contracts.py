"""Data contracts: one YAML file per dataset in `data_contracts/`, loaded and checked here.

A contract declares the dataset's columns and rules, its partitioning, features, target and
model. Its hash travels with every batch, feature version and model built under it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
    "failure_policy",
    "features",
    "target",
    "split",
    "model",
}
REQUIRED_KEYS = {"dataset", "owner", "columns"}
FAILURE_POLICIES = {"quarantine_batch"}


class ContractError(ValueError):
    """A contract file that breaks the contract format; the message names file and key."""


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
class Contract:
    """A parsed, checked data contract."""

    dataset: str
    owner: str
    path: str
    hash: str
    columns: tuple[Column, ...]
    raw: dict[str, Any] = field(repr=False)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def table(self) -> dict[str, Any]:
        return self.raw.get("table") or {}

    @property
    def failure_policy(self) -> str:
        return self.raw.get("failure_policy", "quarantine_batch")

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


def load_contract(name_or_path: str | Path) -> Contract:
    """Load and check a contract; `ContractError` names the file and the offending key."""
    path = contract_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ContractError(f"{path}: no such contract file") from None
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ContractError(f"{path}: a contract is a mapping of keys, got {type(raw).__name__}")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ContractError(
            f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}"
        )
    missing = REQUIRED_KEYS - set(raw)
    if missing:
        raise ContractError(f"{path}: missing required key(s) {sorted(missing)}")
    policy = raw.get("failure_policy", "quarantine_batch")
    if policy not in FAILURE_POLICIES:
        raise ContractError(f"{path}: failure_policy {policy!r} is not one of {FAILURE_POLICIES}")
    columns = tuple(_column(path, name, spec) for name, spec in (raw["columns"] or {}).items())
    if not columns:
        raise ContractError(f"{path}: columns: at least one column is required")
    canonical = json.dumps(raw, sort_keys=True, default=str).encode()
    return Contract(
        dataset=str(raw["dataset"]),
        owner=str(raw["owner"]),
        path=str(path),
        hash=hashlib.sha256(canonical).hexdigest()[:16],
        columns=columns,
        raw=raw,
    )


def _column(path: Path, name: str, spec: Any) -> Column:
    where = f"{path}: columns.{name}"
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise ContractError(f"{where}: expected a mapping or a type name")
    unknown = set(spec) - COLUMN_KEYS
    if unknown:
        raise ContractError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(COLUMN_KEYS)}"
        )
    ctype = spec.get("type")
    if ctype not in COLUMN_TYPES:
        raise ContractError(f"{where}.type: {ctype!r} is not one of {sorted(COLUMN_TYPES)}")
    for bound in ("min", "max"):
        if bound in spec and not isinstance(spec[bound], int | float):
            raise ContractError(f"{where}.{bound}: must be a number, got {spec[bound]!r}")
    allowed = spec.get("allowed")
    if allowed is not None and not isinstance(allowed, list):
        raise ContractError(f"{where}.allowed: must be a list")
    return Column(
        name=name,
        type=ctype,
        nullable=bool(spec.get("nullable", True)),
        min=spec.get("min"),
        max=spec.get("max"),
        allowed=tuple(allowed) if allowed is not None else None,
        regex=spec.get("regex"),
        unique=bool(spec.get("unique", False)),
    )
