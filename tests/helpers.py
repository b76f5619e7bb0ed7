"""Small builders shared by the tests: files in every dialect the reader must handle."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from segmentation.synthetic import make_customers

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "sample_data.csv"
SAMPLE_CUSTOMERS = ROOT / "sample_data" / "sample_customers.csv"


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
