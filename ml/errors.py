"""The one error hierarchy of mlpipe: a root and the kinds that retry policies name.

Every error the library raises on purpose is an `MlpipeError` of one kind, so an Airflow
`ExceptionRetryPolicy` (or any caller) decides by kind, not by module:

| kind | what it means | what a retry does |
| --- | --- | --- |
| `BadInputError` | input that cannot be accepted as it is (unreadable bytes, a bad request) | reads the same input: fail at once |
| `ContractViolationError` | a batch that broke its data contract (already quarantined) | same batch, same rules: fail at once |
| `ConfigurationError` | a contract, source, setting or secret that is wrong or missing | same configuration: fail, fix, re-run |
| `NotFoundError` | what was asked for is not there (yet): a day's file, a batch, a version | may appear later: retry as usual |
| `TransientError` | infrastructure that did not answer or answered "busy" (network, S3, HTTP 5xx) | worth a retry with backoff |
| `RefusedError` | a decision that cannot be made safely (an evaluation that errored, a diverged fit) | refused, never taken by default |

Messages name the input, the rule and where the evidence is.
"""

from __future__ import annotations


class MlpipeError(Exception):
    """Root of every error mlpipe raises on purpose."""


class BadInputError(MlpipeError):
    """Input that cannot be accepted as it is; a retry would read the same input."""


class ContractViolationError(MlpipeError):
    """Data that broke its data contract."""


class ConfigurationError(MlpipeError):
    """A contract, source, setting or secret that is wrong or missing."""


class ContractError(ConfigurationError):
    """A contract file that breaks the contract format; the message names file, line and key."""


class NotFoundError(MlpipeError):
    """What was asked for is not there (yet)."""


class TransientError(MlpipeError):
    """Infrastructure that did not answer or was busy: worth a retry."""


class RefusedError(MlpipeError):
    """A decision or result that cannot be taken safely, so it is refused."""


# Fully qualified names, for retry policies that name exceptions by path (DAG files import
# nothing heavy at parse time).
KINDS = {
    cls.__name__: f"{__name__}.{cls.__name__}"
    for cls in (
        BadInputError,
        ContractViolationError,
        ConfigurationError,
        NotFoundError,
        TransientError,
        RefusedError,
    )
}
