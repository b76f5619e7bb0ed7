"""The baseline the benchmarks compare with: the pipeline's work done by pandas and scikit-learn,
as a competent user would write it, as fast as that straightforward code goes.

    python benchmarks/baseline.py run INPUT OUT_DIR [--k 4]
    python benchmarks/baseline.py sweep INPUT OUT_DIR [--k-range 2-10]

`run`: read the CSV, fill missing values with medians, cap at the 1.5 IQR fences, standardize,
KMeans with scikit-learn's defaults, the squared-Euclidean silhouette over every customer (exact,
O(n·k) from per-cluster sums, as the app computes it), per-segment mean/median/min/max, and
every customer written with a segment. `sweep`: the same preparation once, then for every k the
fit, the exact silhouette and the profile, and one customer file with every k's segment.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

FEATURES = ["Age", "Spend", "Recency", "Frequency"]
SEED = 42


def prepare(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """The customers as read, their imputed features (what profiles describe) and the
    standardized matrix of the capped features (what KMeans sees)."""
    customers = pd.read_csv(path)
    values = customers[FEATURES].astype(float)
    values = values.fillna(values.median())
    q1, q3 = values.quantile(0.25), values.quantile(0.75)
    iqr = q3 - q1
    capped = values.clip(lower=q1 - 1.5 * iqr, upper=q3 + 1.5 * iqr, axis=1)
    return customers, values, StandardScaler().fit_transform(capped.to_numpy())


def segments(scaled: np.ndarray, k: int) -> np.ndarray:
    """Each customer's cluster from scikit-learn's KMeans with its defaults."""
    return KMeans(n_clusters=k, random_state=SEED).fit_predict(scaled)


def silhouette(scaled: np.ndarray, labels: np.ndarray) -> float:
    """Squared-Euclidean silhouette over every row in O(n·k): the mean squared distance to
    cluster C is |x|² - 2 x·mean_C + mean_C(|y|²)."""
    k = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=k).astype(float)
    squared = (scaled * scaled).sum(axis=1)
    sums = np.zeros((k, scaled.shape[1]))
    np.add.at(sums, labels, scaled)
    means = sums / np.maximum(sizes, 1)[:, None]
    mean_squared = np.bincount(labels, weights=squared, minlength=k) / np.maximum(sizes, 1)
    to_cluster = squared[:, None] - 2 * scaled @ means.T + mean_squared[None]
    rows = np.arange(len(labels))
    own = sizes[labels]
    inside = to_cluster[rows, labels] * own / np.maximum(own - 1, 1)
    to_cluster[rows, labels] = np.inf
    to_cluster[:, sizes == 0] = np.inf
    nearest = to_cluster.min(axis=1)
    larger = np.maximum(inside, nearest)
    score = np.where(
        (own > 1) & (larger > 0), (nearest - inside) / np.where(larger > 0, larger, 1), 0
    )
    return float(score.mean())


def profile(values: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """Per segment: mean, median, min and max of each feature."""
    return values.groupby(labels).agg(["mean", "median", "min", "max"])


def run(path: Path, out: Path, k: int) -> float:
    """One segmentation; returns the silhouette."""
    customers, values, scaled = prepare(path)
    labels = segments(scaled, k)
    score = silhouette(scaled, labels)
    out.mkdir(parents=True)
    profile(values, labels).to_csv(out / "segments.csv")
    customers["segment"] = labels + 1
    customers.to_csv(out / "customers.csv", index=False)
    return score


def sweep(path: Path, out: Path, ks: range) -> dict[int, float]:
    """Every k on one prepared table; returns each k's silhouette."""
    customers, values, scaled = prepare(path)
    out.mkdir(parents=True)
    scores = {}
    for k in ks:
        labels = segments(scaled, k)
        scores[k] = silhouette(scaled, labels)
        profile(values, labels).to_csv(out / f"segments_k{k}.csv")
        customers[f"segment_k{k}"] = labels + 1
    customers.to_csv(out / "customers.csv", index=False)
    return scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["run", "sweep"])
    parser.add_argument("input", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--k-range", default="2-10")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.command == "run":
        result = run(args.input, args.out, args.k)
    else:
        low, high = (int(v) for v in args.k_range.split("-"))
        result = sweep(args.input, args.out, range(low, high + 1))
    print(f"{args.command}: {time.perf_counter() - started:.2f}s, silhouette {result}")


if __name__ == "__main__":
    sys.exit(main())
