"""The contract's failure policy as a pure function: what broke + the policy -> what happens.

- nothing broke: the batch goes to `validated` (`passed`);
- `quarantine_rows`, only row rules (`ROW_KINDS`) broken, bad rows singled out and at most
  `max_bad_fraction` of the batch: bad rows to `quarantine`, good rows on (`rows_quarantined`);
- otherwise the whole batch goes to `quarantine` (`batch_quarantined`), and `on_failure: fail`
  fails the task (`warn` logs and goes on).

Counting bad rows reads the batch, so the caller counts them only when `counts_rows` says the
policy needs them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ml.contracts import FailurePolicy
from ml.validation.rules import ROW_KINDS

PASSED = "passed"
ROWS_QUARANTINED = "rows_quarantined"
BATCH_QUARANTINED = "batch_quarantined"


@dataclass(frozen=True)
class Decision:
    """What happens to a validated batch."""

    status: str  # passed | rows_quarantined | batch_quarantined
    reason: str = ""  # why rows or the batch were quarantined (the manifest's quarantine_reason)
    fail: bool = False  # the task fails (raises ContractViolation) after quarantining

    @property
    def passed(self) -> bool:
        """Rows go on to `validated` (all of them, or the good ones)."""
        return self.status != BATCH_QUARANTINED


def counts_rows(failed_kinds: Collection[str], policy: FailurePolicy) -> bool:
    """Whether `decide` needs the number of bad rows: rows mode and only row rules broken."""
    return bool(failed_kinds) and policy.mode == "quarantine_rows" and _row_rules_only(failed_kinds)


def _row_rules_only(failed_kinds: Collection[str]) -> bool:
    return all(kind in ROW_KINDS for kind in failed_kinds)


def decide(
    failed_kinds: Collection[str],
    policy: FailurePolicy,
    *,
    rows: int,
    bad_rows: int | None = None,
) -> Decision:
    """What happens to a batch of `rows` rows whose failed rules are of `failed_kinds` (none:
    it passed); `bad_rows` (rows that broke a row rule) is needed when `counts_rows` says so."""
    if not failed_kinds:
        return Decision(PASSED)
    if policy.mode != "quarantine_rows":
        reason = "contract violation"
    elif not _row_rules_only(failed_kinds):
        reason = "a table-level or column-level rule failed (not only row rules)"
    elif bad_rows is None:
        raise TypeError("decide: quarantine_rows needs the number of bad rows (see counts_rows)")
    elif bad_rows == 0:
        reason = "the row rules failed but no row could be singled out"
    elif (fraction := bad_rows / rows if rows else 1.0) > policy.max_bad_fraction:
        reason = (
            f"{bad_rows} of {rows} rows bad ({fraction:.2%}), over max_bad_fraction "
            f"{policy.max_bad_fraction:g}"
        )
    else:
        return Decision(ROWS_QUARANTINED, f"{bad_rows} of {rows} rows broke row rules")
    return Decision(BATCH_QUARANTINED, reason, fail=policy.on_failure != "warn")
