"""The quarantine zone's helpers, without servers (list, release and drop: tests/integration)."""

from __future__ import annotations

import pytest

from ml import quarantine

pytestmark = pytest.mark.unit


def test_who_defaults_to_the_user():
    assert quarantine._who("alice") == "alice"
    assert quarantine._who(None)
