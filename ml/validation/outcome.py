"""What validating a raw batch did (`ValidationOutcome`), and the error raised when it broke its
contract (`ContractViolation`, which carries the outcome).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ml.errors import ContractViolationError
from ml.validation.policy import BATCH_QUARANTINED
from ml.validation.report import ValidationReport

if TYPE_CHECKING:
    from ml.storage import Manifest


@dataclass(frozen=True)
class ValidationOutcome:
    """What `validate_batch` did with one raw batch: its report, and where its rows went."""

    ref: str  # the raw batch validated
    dataset: str
    status: str  # passed | rows_quarantined | batch_quarantined (see ml.validation.policy)
    report: ValidationReport
    report_url: str  # the report's JSON in the `reports` zone
    report_html_url: str  # the same report as an HTML page
    manifest: Manifest  # in `validated` when passed (rows mode: the good rows), else `quarantine`
    quarantine: Manifest | None = None  # what went to `quarantine`, if anything
    reason: str = ""  # why rows or the batch were quarantined
    rows_validated: int = 0
    rows_quarantined: int = 0

    @property
    def passed(self) -> bool:
        """Rows went on to `validated` (all of them, or the good ones)."""
        return self.status != BATCH_QUARANTINED

    @property
    def failed_rules(self) -> list[str]:
        return self.report.failed_rules


class ContractViolation(ContractViolationError):
    """A batch broke its data contract; it was quarantined.

    The message names the batch, every failed rule id with its unexpected count (or observed
    value) and the report URL. `.report`, `.report_url`, `.outcome` carry the details.
    """

    def __init__(
        self,
        message: str,
        *,
        ref: str = "",
        report: ValidationReport | None = None,
        report_url: str = "",
        outcome: ValidationOutcome | None = None,
    ) -> None:
        super().__init__(message)
        self.ref = ref
        self.report = report
        self.report_url = report_url
        self.outcome = outcome

    @property
    def failed_rules(self) -> list[str]:
        return self.report.failed_rules if self.report else []

    def __reduce__(self):  # keep the details when pickled (Dask, Airflow)
        return (self.__class__, (str(self),), self.__dict__)
