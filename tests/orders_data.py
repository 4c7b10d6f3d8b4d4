"""The second dataset: daily online-shop orders, realistic and deterministic by day.

Not flights, not from any package: one CSV per day as an order system would export it
(`<drop>/orders/<YYYY-MM-DD>.csv`), with a weekly rhythm, a morning-to-evening curve in the
order times, heavy-tailed basket amounts, per-country currencies, optional discounts (blank
cells) and a few returns. The contract is `data_contracts/orders.yaml`; nothing in `dags/` or
`ml/` knows this dataset.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

COUNTRIES = {"US": "USD", "CA": "CAD", "GB": "GBP", "DE": "EUR", "FR": "EUR", "NL": "EUR"}
COUNTRY_WEIGHTS = [0.45, 0.1, 0.15, 0.15, 0.1, 0.05]
CHANNELS = ["web", "app", "store"]
CHANNEL_WEIGHTS = [0.55, 0.35, 0.10]
WEEKDAY_FACTOR = [0.9, 0.85, 0.9, 1.0, 1.2, 1.4, 1.1]  # Monday .. Sunday


def orders_day(day: date, mean_orders: int = 120) -> pd.DataFrame:
    """The orders of one UTC day (same day, same rows)."""
    rng = np.random.default_rng(day.toordinal())
    n = max(1, int(rng.poisson(mean_orders * WEEKDAY_FACTOR[day.weekday()])))
    # Order times: busier from late morning to evening.
    hours = rng.choice(24, size=n, p=_hour_profile())
    seconds = np.sort(hours * 3600 + rng.integers(0, 3600, size=n))
    created = pd.Timestamp(day, tz="UTC") + pd.to_timedelta(seconds, unit="s")
    country = rng.choice(list(COUNTRIES), size=n, p=COUNTRY_WEIGHTS)
    items = np.minimum(1 + rng.geometric(0.45, size=n) - 1, 50)
    amount = np.round(items * np.exp(rng.normal(3.1, 0.7, size=n)), 2).clip(0.5, 20000)
    discount = np.where(rng.random(n) < 0.25, rng.choice([0.05, 0.1, 0.15, 0.2], size=n), np.nan)
    return pd.DataFrame(
        {
            "order_id": [f"ORD-{day:%Y%m%d}-{i:05d}" for i in range(1, n + 1)],
            "customer_id": [f"C{c:06d}" for c in rng.integers(1, 250_000, size=n)],
            "created_at": created,
            "country": country,
            "currency": [COUNTRIES[c] for c in country],
            "channel": rng.choice(CHANNELS, size=n, p=CHANNEL_WEIGHTS),
            "items": items.astype("int64"),
            "amount": amount,
            "discount": discount,
            "returned": rng.random(n) < 0.04,
        }
    )


def _hour_profile() -> np.ndarray:
    hours = np.arange(24)
    weights = 0.2 + np.exp(-((hours - 14) ** 2) / 30.0)
    return weights / weights.sum()


def orders_csv(day: date, bad_amounts: int = 0, mean_orders: int = 120) -> bytes:
    """The day's file as the shop's export writes it (ISO times with `Z`, blank = missing);
    `bad_amounts` rows (the first ones) get a negative amount, which the contract forbids."""
    df = orders_day(day, mean_orders)
    df.loc[: bad_amounts - 1, "amount"] = -5.0
    df["created_at"] = df["created_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return df.to_csv(index=False).encode()


def drop_orders(drop_dir: Path, day: date, bad_amounts: int = 0, mean_orders: int = 120) -> Path:
    """Write the day's file where the contract's source looks for it; return its path."""
    folder = Path(drop_dir) / "orders"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{day.isoformat()}.csv"
    path.write_bytes(orders_csv(day, bad_amounts, mean_orders))
    return path
