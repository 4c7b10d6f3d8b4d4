"""PII before the `validated` zone: the contract's PII columns dropped or hashed (HMAC with a salt),
and only the contract's columns: an undeclared column (an `ssn` nobody declared) never reaches
`validated`, whatever the `extra_columns` policy or a release says.

Used by validation (rows that pass) and by `ml.quarantine` (rows a person releases). The
quarantine zone keeps rows as they came, PII included: it is restricted.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from ml import storage
from ml.contracts import Contract
from ml.errors import ConfigurationError
from ml.settings import Settings, get_settings
from ml.validation.rules import undeclared

if TYPE_CHECKING:
    import pandas as pd


class PIIError(ConfigurationError):
    """A contract hashes PII but no salt is configured."""


def pii_salt(contract: Contract, settings: Settings | None = None) -> bytes | None:
    """The salt for the contract's hashed PII columns (None when it hashes none)."""
    hashed = sorted(c for c, action in contract.pii.items() if action == "hash")
    if not hashed:
        return None
    salt = (settings or get_settings()).pii_salt
    if salt is None or not salt.get_secret_value():
        raise PIIError(
            f"contract {contract.dataset} ({contract.path}) hashes PII column(s) {hashed}, but "
            "no salt is configured: set MLPIPE_PII_SALT (settings.pii_salt)"
        )
    return salt.get_secret_value().encode()


def apply_pii(df: pd.DataFrame, contract: Contract, salt: bytes | None) -> pd.DataFrame:
    """Drop undeclared columns; drop or hash the contract's PII columns (hash: HMAC-SHA256 hex
    of the value's text with the salt; missing values stay missing)."""
    import pandas as pd

    extra = undeclared(contract, df.columns)
    if extra:
        df = df.drop(columns=extra)
    if not contract.pii:
        return df
    out = df.drop(columns=[c for c, a in contract.pii.items() if a == "drop" and c in df])
    for col, action in contract.pii.items():
        if action != "hash" or col not in out:
            continue
        if salt is None:
            raise PIIError(f"contract {contract.dataset}: no salt to hash PII column {col!r}")
        values = out[col]
        hashed = [
            None if pd.isna(v) else hmac.new(salt, str(v).encode(), hashlib.sha256).hexdigest()
            for v in values
        ]
        out[col] = pd.Series(hashed, index=out.index, dtype="string")
    return out


def to_validated(
    manifest: storage.Manifest,
    contract: Contract,
    salt: bytes | None,
    extra: dict[str, Any],
    settings: Settings,
) -> storage.Manifest:
    """A whole batch to `validated` under its batch id, undeclared columns dropped, PII dropped
    or hashed (a plain copy of its parts when there is nothing to drop or hash). A batch with
    hashed columns records the salt's version (`pii_salt_version`), never the salt."""
    if any(action == "hash" for action in contract.pii.values()):
        extra = {**extra, "pii_salt_version": settings.pii_salt_version}
    if not contract.pii and not undeclared(contract, manifest.schema):
        return storage.copy_batch(manifest, "validated", extra=extra, settings=settings)
    frames = (apply_pii(df, contract, salt) for df in storage.read_parts(manifest, settings))
    return storage.write_parts(frames, "validated", manifest, extra=extra, settings=settings)
