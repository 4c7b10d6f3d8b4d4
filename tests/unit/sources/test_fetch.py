"""Fetching a day's file from a drop folder: nothing dropped yet is its own error; the folder
is never left."""

from __future__ import annotations

from datetime import date

import pytest

from ml.sources.errors import SourceError, SourceNotFound, UnreadableInput
from ml.sources.read import read_source

pytestmark = pytest.mark.unit

DAY = date(2024, 3, 1)


def test_missing_file_is_its_own_error(drop, orders):
    with pytest.raises(SourceNotFound, match="nothing dropped yet") as info:
        read_source(orders.source, DAY, orders.columns)
    assert not isinstance(info.value, UnreadableInput)


def test_drop_folder_stays_inside_its_root(drop):
    with pytest.raises(SourceError, match="outside the drop folder"):
        read_source({"kind": "drop_folder", "path": "..", "pattern": "{date}.csv"}, DAY)
