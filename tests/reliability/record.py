"""The results table of the reliability suite: one row per case, written as JSON and markdown.

Every case (a hostile input, a fault) records what happened with `Recorder.record` (through the
`record_outcome` fixture of `conftest.py`); at the end of the session the rows go to
`results.json` and `results.md` in `results_dir()`: `$MLPIPE_RELIABILITY_DIR`, else
`.mlpipe/reliability/` in the repository. `python -m tests.reliability.table` turns them into
the README's reliability section.

Row accounting: every input row is validated, quarantined (as rows, or inside input bytes kept
byte for byte), or left at its source (an input refused before it was taken, a transient
failure, nothing published): `rows_lost = rows_in - validated - quarantined - left_at_source`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV_DIR = "MLPIPE_RELIABILITY_DIR"


def results_dir() -> Path:
    """Where the suite writes its table: `$MLPIPE_RELIABILITY_DIR` or `.mlpipe/reliability`."""
    return Path(os.environ.get(ENV_DIR) or REPO / ".mlpipe" / "reliability")


@dataclass
class CaseResult:
    """What one case did to the pipeline."""

    suite: str  # hostile | faults | ...
    case: str
    kind: str  # the input format (csv, jsonl, parquet, http) or the fault's kind
    expected: str  # accepted | quarantined | refused | not_found | transient | survived ...
    outcome: str  # what happened, same words; `crash` for an unexpected exception
    rule: str = ""  # the rule(s) or error kind named (comma-separated), e.g. a quarantine reason
    expected_rule: str = ""  # when given, `rule` must name it
    rows_in: int = 0
    rows_validated: int = 0
    rows_quarantined: int = 0
    rows_left_at_source: int = 0
    duplicates: int = 0
    crashed: bool = False  # an exception with nothing quarantined and no named error kind
    silently_accepted: bool = False  # rows reached `validated` that should not have
    note: str = ""

    @property
    def rows_lost(self) -> int:
        return self.rows_in - self.rows_validated - self.rows_quarantined - self.rows_left_at_source

    @property
    def as_expected(self) -> bool:
        return (
            self.outcome == self.expected
            and (not self.expected_rule or self.expected_rule in self.rule.split(","))
            and not self.crashed
            and not self.silently_accepted
            and self.rows_lost == 0
            and self.duplicates == 0
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "rows_lost": self.rows_lost, "as_expected": self.as_expected}


@dataclass
class Recorder:
    """Collects the rows of one test session (later rows of the same case replace earlier)."""

    rows: dict[tuple[str, str], CaseResult] = field(default_factory=dict)

    def record(self, result: CaseResult) -> CaseResult:
        self.rows[(result.suite, result.case)] = result
        return result

    def write(self, directory: Path | None = None) -> Path | None:
        """`results.json` and `results.md` of the recorded rows (nothing when none)."""
        if not self.rows:
            return None
        from tests.reliability.table import render

        directory = directory or results_dir()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "results.json"
        # Cases this session did not run keep their rows from the last run that did (delete
        # results.json to forget a case that no longer exists).
        kept = [r for r in load_rows(path) if (r["suite"], r["case"]) not in self.rows]
        rows = kept + [r.to_dict() for r in self.rows.values()]
        doc = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "rows": rows}
        path.write_text(json.dumps(doc, indent=2) + "\n")
        (directory / "results.md").write_text(render(rows) + "\n")
        return path


def load_rows(path: Path) -> list[dict]:
    """The rows of a `results.json` (none when there is no file)."""
    if not path.exists():
        return []
    return json.loads(path.read_text())["rows"]
