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
        if steps.log:
            values = np.log1p(values.clip(lower=0))
        columns.append((values - steps.mean) / steps.std)
    return np.column_stack(columns), customers["segment"].to_numpy()
