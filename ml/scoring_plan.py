"""What a batch-scoring run is, as data: its knobs' defaults, its plan and its results.

Light (the standard library only): the batch_score DAG derives its Params from these defaults at
parse time and converts plans and results at its edge (`to_dict`/`from_dict`); `ml.score` does
the work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_THRESHOLD = 0.5  # probability at or over which the label is positive
DRIFT_THRESHOLD = 0.2  # PSI above 0.2 is the usual "significant shift"
DAILY_MAX_DAYS = 31  # the daily run scores at most this many (the newest) unscored partitions


@dataclass(frozen=True)
class ScoringPlan:
    """The one version a run scores with (the champion, resolved once; None: no champion yet)
    and the partitions it scores, by name (`date=YYYY-MM-DD`, `hour=YYYY-MM-DDTHH`,
    `month=YYYY-MM`: `ml.partitions`)."""

    model_name: str
    version: str | None
    partitions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "partitions": list(self.partitions),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoringPlan:
        version = d.get("version")
        return cls(
            model_name=d["model_name"],
            version=None if version is None else str(version),
            partitions=tuple(d.get("partitions") or ()),
        )


@dataclass(frozen=True)
class ScoredPartition:
    """One partition scored and committed: its predictions batch and its drift."""

    ref: str
    rows: int
    model_name: str
    version: str
    partition: str
    drift_report: str
    drifted: tuple[str, ...]
    max_psi: float


@dataclass(frozen=True)
class ScoringResult:
    """A run's partitions, all scored with one version."""

    model_name: str
    version: str | None
    refs: tuple[str, ...] = ()
    rows: int = 0
    drift_reports: tuple[str, ...] = ()
    drifted: tuple[str, ...] = ()  # features over the drift threshold in any partition

    @classmethod
    def of(cls, plan: ScoringPlan, scored: list[ScoredPartition]) -> ScoringResult:
        return cls(
            model_name=plan.model_name,
            version=plan.version,
            refs=tuple(s.ref for s in scored),
            rows=sum(s.rows for s in scored),
            drift_reports=tuple(s.drift_report for s in scored),
            drifted=tuple(sorted({c for s in scored for c in s.drifted})),
        )

    def to_dict(self) -> dict[str, Any]:
        """The XCom value (and, picked, the predictions asset's extras): the version is spelled
        `model_version` there, as in the predictions manifests and rows those readers know."""
        return {
            "model_name": self.model_name,
            "model_version": self.version,
            "refs": list(self.refs),
            "rows": self.rows,
            "drift_reports": list(self.drift_reports),
            "drifted": list(self.drifted),
        }
