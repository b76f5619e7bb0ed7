"""Capping or log(1 + x) for skewed spend and order counts: the figures behind the default, on
a real order log.

    python -m benchmarks.skew_treatment [--k 4] [--seeds 3]

The log is CDNOW (69,659 order lines of 23,570 customers of a CD shop, 1997-1998), the file the
`lifetimes` package ships (requirements-dev.txt installs it; nothing is downloaded). It runs
through the real pipeline once per treatment and seed:

- cap: every feature capped at its IQR fences, no log (the default before);
- log: the default now, log(1 + x) of the skewed features (Spend and Frequency here), which
  are not capped; Recency is capped.

For each it prints what the model sees of the best customers (how many of the top 1% by spend
it can still tell apart, how many customers sit at a cap), the top segment (size, median spend
and orders, how many of the top 1% by spend it holds), the segment sizes, the silhouette and
the agreement between seeds (adjusted Rand index). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import median, print_table
from segmentation.manifest import FeatureModel
from tests.helpers import cdnow_csv

TREATMENTS = {"cap": (), "log": None}  # log_features: none, or the automatic choice


def model_view(customers: pd.DataFrame, steps: FeatureModel, feature: str) -> pd.Series:
    """A feature as the model saw it (filled, capped, logged), before scaling."""
    values = customers[feature].astype(float).fillna(steps.fill)
    if steps.fences:
        values = values.clip(*steps.fences)
    return np.log1p(values.clip(lower=0)) if steps.log else values


def figures(result) -> dict:
    """What one run tells about the best customers."""
    customers = pd.read_csv(result.out_dir / "customers.csv")
    model = result.manifest.model.features
    spend, orders = customers["Spend"], customers["Frequency"]
    top = spend >= spend.quantile(0.99)
    capped = sum(
        int((customers[f] > model[f].fences[1]).sum())
        for f in ("Spend", "Frequency")
        if model[f].fences
    )
    first = customers["segment"] == 1
    return {
        "labels": customers["segment"].to_numpy(),
        "top apart": model_view(customers, model["Spend"], "Spend")[top].nunique(),
        "top": int(top.sum()),
        "capped": capped,
        "size": int(first.sum()),
        "spend": spend[first].median(),
        "orders": orders[first].median(),
        "top in it": float((customers.loc[top, "segment"] == 1).mean()),
        "sizes": sorted(customers["segment"].value_counts(normalize=True), reverse=True),
        "silhouette": result.manifest.metrics.silhouette,
        "name": result.segments.loc[0, "name"],
    }


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labellings of the same customers."""
    from segmentation.sweep import adjusted_rand

    counts = pd.DataFrame({"a": a, "b": b}).value_counts().rename("n").reset_index()
    return adjusted_rand(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()

    from segmentation.params import SegmentationParams
    from segmentation.pipeline import run_segmentation
    from segmentation.spark_engine import get_spark

    spark = get_spark()
    rows = []
    with tempfile.TemporaryDirectory(prefix="skew-") as scratch:
        folder = Path(scratch)
        source = folder / "cdnow_orders.csv"
        cdnow_csv(source)
        for name, log_features in TREATMENTS.items():
            runs = [
                figures(
                    run_segmentation(
                        spark,
                        str(source),
                        SegmentationParams(k=args.k, seed=seed, log_features=log_features),
                        folder / f"{name}-{seed}",
                    )
                )
                for seed in range(1, args.seeds + 1)
            ]
            first = runs[0]
            aris = [agreement(a["labels"], b["labels"]) for a, b in itertools.combinations(runs, 2)]
            rows.append(
                [
                    name,
                    f"{first['top apart']} of {first['top']}",
                    f"{first['capped']:,}",
                    f"{first['name']}: {first['size']:,}",
                    f"{first['spend']:,.0f}",
                    f"{first['orders']:.0f}",
                    f"{first['top in it']:.0%}",
                    " / ".join(f"{s:.0%}" for s in first["sizes"]),
                    f"{median(r['silhouette'] for r in runs):.3f}",
                    f"{min(aris):.3f}" if aris else "-",
                ]
            )
    print(f"\nCDNOW, k={args.k}, seeds 1..{args.seeds} (figures of seed 1, silhouette median)")
    print_table(
        [
            "treatment",
            "top 1% by spend told apart",
            "values at a cap",
            "top segment",
            "its median spend",
            "its median orders",
            "top 1% in it",
            "segment sizes",
            "silhouette",
            "min ARI",
        ],
        rows,
        left=0,
    )


if __name__ == "__main__":
    main()
