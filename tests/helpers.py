"""Small builders shared by the tests: files in every dialect the reader must handle."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from segmentation.synthetic import make_customers

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "sample_data.csv"
SAMPLE_CUSTOMERS = ROOT / "sample_data" / "sample_customers.csv"

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail after `timeout`
    seconds saying what never happened. Tests wait for a condition, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def synthetic_csv(path: Path, n: int = 400, segments: int = 4, seed: int = 3, **kwargs):
    """Write synthetic customers to `path` and return their latent segment labels."""
    table, labels = make_customers(n, segments=segments, seed=seed, **kwargs)
    table.to_csv(path, index=False)
    return table, labels


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def frame_csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def refunds_csv(path: Path) -> Path:
    """60 customers whose Spend is heavy-tailed (five big spenders) with three net refunds
    (negative spend, 5% of customers) and one missing Age: the case a cap used to hide."""
    rows: list[dict] = [
        {
            "CustomerID": f"C{i:02d}",
            "Age": 30 + i % 20,
            "Spend": 100 + 10 * i,
            "Recency": i % 30,
            "Frequency": 1 + i % 5,
        }
        for i in range(60)
    ]
    for row, spend in zip(
        rows, (5_000, 8_000, 12_000, 20_000, 50_000, -20, -35, -50), strict=False
    ):
        row["Spend"] = spend
    rows[10]["Age"] = None
    return frame_csv(path, rows)


def cdnow_lines() -> pd.DataFrame:
    """CDNOW, a real public order log (69,659 lines of 23,570 customers of a CD shop,
    1997-1998), from the file the `lifetimes` package ships (found without importing it;
    requirements-dev.txt installs it, nothing is downloaded)."""
    spec = importlib.util.find_spec("lifetimes")
    assert spec is not None and spec.origin, "requirements-dev.txt installs lifetimes"
    master = Path(spec.origin).parent / "datasets" / "CDNOW_master.txt"
    return pd.read_csv(master, sep=r"\s+", dtype={"customer_id": str, "date": str})


def cdnow_csv(path: Path) -> pd.DataFrame:
    """Write CDNOW as the CSV a shop would export (its own column names, dates as 19970101)
    and return its order lines."""
    lines = cdnow_lines()
    lines.to_csv(path, index=False)
    return lines


def real_shaped_log(path):
    """A gift-shop export as written: month-first dates with times, prices with thousands
    separators, a return as a negative quantity, a C-invoice, placeholder ids in several
    spellings and one till account ('99999') holding 40 of the 100 lines."""
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
    rows = []
    for n in range(24):  # customers 12346..12369: two lines of 2 × 1,000.00
        countries = {0: ("France", "Germany"), 1: ("Spain", "Spain")}.get(
            n, ("United Kingdom",) * 2
        )
        for line, country in enumerate(countries):
            rows.append(
                (
                    f"5364{n:02d}",
                    "85123A",
                    "WHITE HANGING HEART",
                    2,
                    f"12/{1 + n if line == 0 else 13 + n % 15}/2010 {8 + line}:{n:02d}",
                    "1,000.00",
                    12346 + n,
                    country,
                )
            )
    rows += [
        (
            "536500",
            "22423",
            "REGENCY CAKESTAND",
            -1,
            "12/20/2010 10:00",
            "1,000.00",
            12347,
            "Norway",
        ),
        ("C536501", "22423", "REGENCY CAKESTAND", -1, "12/21/2010 10:00", "1,000.00", 12348, "UK"),
        ("536502", "22423", "REGENCY CAKESTAND", 1, "12/22/2010 10:00", "1,250.00", 12349, "UK"),
    ]
    rows += [
        (
            f"5366{i:02d}",
            "85123A",
            "WHITE HANGING HEART",
            1,
            f"12/{1 + i % 28}/2010 12:00",
            "10.00",
            99999,
            "United Kingdom",
        )
        for i in range(40)
    ]
    for i, token in enumerate(
        ["(blank)"] * 3 + [" (BLANK) ", "N/A", "N/A", " n / a ", "Guest", ""]
    ):
        rows.append(
            (
                f"5367{i:02d}",
                "85123A",
                "WHITE HANGING HEART",
                1,
                "12/5/2010 9:30",
                "1,000.00",
                token,
                "EIRE",
            )
        )
    lines = [",".join(f'"{v}"' if "," in str(v) else str(v) for v in row) for row in rows]
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def model_inputs(result) -> tuple[np.ndarray, np.ndarray]:
    """Every customer's standardized features, rebuilt from customers.csv and the model the
    manifest records (fill value, outlier fences, log, mean and standard deviation), and the
    segments."""
    customers = pd.read_csv(result.out_dir / "customers.csv")
    model = result.manifest.model.features
    columns = []
    for feature in result.manifest.features:
        steps = model[feature]
        values = customers[feature].astype(float).fillna(steps.fill)
        if steps.fences:
            values = values.clip(*steps.fences)
        if steps.transform == "log":
            values = np.log1p(values.clip(lower=0))
        elif steps.transform == "signed-log":
            values = np.sign(values) * np.log1p(values.abs())
        columns.append((values - steps.mean) / steps.std)
    return np.column_stack(columns), customers["segment"].to_numpy()
