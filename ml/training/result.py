"""The results training tasks hand on: a registered version, a baseline run, a compact variant.

The DAG turns them into XCom (`to_dict`) and back (`from_dict`) at its edge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainResult:
    """A model version registered by a training task, and what it was trained and judged on."""

    model_name: str
    version: str
    run_id: str
    feature_version: str
    eval_snapshot: str
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainResult:
        return cls(
            model_name=values["model_name"],
            version=str(values["version"]),
            run_id=values["run_id"],
            feature_version=values["feature_version"],
            eval_snapshot=values["eval_snapshot"],
            metrics=dict(values.get("metrics") or {}),
        )


@dataclass(frozen=True)
class BaselineResult:
    """The baseline's MLflow run on a feature set and its test metrics (`test_*`)."""

    run_id: str
    metrics: dict[str, float]
    task_key: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BaselineResult:
        return cls(
            run_id=values["run_id"], metrics=dict(values["metrics"]), task_key=values["task_key"]
        )


@dataclass(frozen=True)
class CompactResult:
    """The compact variant of a version: its own version, whether an earlier call made it
    (`reused`), and its figures (for a reused one: the tags it was registered with)."""

    model_name: str
    version: str
    reused: bool
    report: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "reused": self.reused,
            **self.report,
        }
