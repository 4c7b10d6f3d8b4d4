"""Rows of a day from a contract's source section: a drop folder typed from the contract, a
snapshot table read whole, an unknown kind named."""

from __future__ import annotations

from datetime import date

import pytest

from ml import contracts
from ml.sources.errors import SourceError
from ml.sources.read import read_source
from tests.orders_data import drop_orders, orders_day

pytestmark = pytest.mark.unit

DAY = date(2024, 3, 1)


def test_the_second_dataset_is_deterministic_and_onboarded_by_its_contract(orders):
    assert orders_day(DAY).equals(orders_day(DAY))
    assert not orders_day(DAY).equals(orders_day(date(2024, 3, 2)))
    assert orders.source["kind"] == "drop_folder"
    assert not orders.features and not orders.target  # no training DAGs for it
    assert "orders" in contracts.available_datasets()


def test_drop_folder_csv_is_typed_from_the_contract(drop, orders):
    drop_orders(drop, DAY)
    df, where = read_source(orders.source, DAY, orders.columns)
    assert where == f"drop_folder:{drop / 'orders' / '2024-03-01.csv'}"
    expected = orders_day(DAY)
    assert len(df) == len(expected)
    assert str(df["created_at"].dt.tz) == "UTC"
    assert (df["created_at"] == expected["created_at"]).all()
    assert df["order_id"].tolist() == expected["order_id"].tolist()
    assert df["returned"].dtype == bool and df["items"].dtype.kind == "i"


def test_an_unknown_source_kind_is_named():
    with pytest.raises(SourceError, match="source kind 'ftp'"):
        read_source({"kind": "ftp"}, date(2013, 1, 1))
