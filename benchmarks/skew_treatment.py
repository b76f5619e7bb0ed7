"""Capping or log(1 + x) for skewed spend and order counts: the figures behind the default, on
a real order log.

    python -m benchmarks.skew_treatment [--k 4] [--seeds 3] [--cases cdnow,refunds]

The log is CDNOW (69,659 order lines of 23,570 customers of a CD shop, 1997-1998), the file the
`lifetimes` package ships (requirements-dev.txt installs it; nothing is downloaded). It runs
through the real pipeline once per treatment and seed:

- cap: every feature capped at its IQR fences, no log (the default before);
- log: the default now, log(1 + x) of the skewed features (Spend and Frequency here), which
  are not capped; Recency is capped.

The case "refunds" is CDNOW with net refunds: nine customers (every 2,618th by id) return goods
worth 1.5 times what they bought, so their spend is negative. Before, those nine kept Spend from
being logged, and it was capped ("cap": only Frequency logged); now it gets sign(x)·log(1 + |x|)
("signed log", the automatic choice).

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
from tests.helpers import cdnow_lines

# Per case, each treatment's log_features: none, only Frequency, or the automatic choice.
CASES = {
    "cdnow": {"cap": (), "log": None},
    "refunds": {"cap": ("Frequency",), "signed log": None},
}
REFUNDERS = 9


def with_refunds(lines: pd.DataFrame) -> pd.DataFrame:
    """CDNOW with `REFUNDERS` customers, evenly spread over the ids, who return 1.5 times what
    they bought (one return line on their last day): a net refund, a negative Spend."""
    ids = sorted(lines["customer_id"].unique())
    chosen = ids[:: len(ids) // REFUNDERS][:REFUNDERS]
    bought = lines[lines["customer_id"].isin(chosen)].groupby("customer_id")
    returns = pd.DataFrame(
        {
            "customer_id": chosen,
            "date": bought["date"].max().loc[chosen].to_numpy(),
            "number_of_cds": -1,
            "dollar_value": -1.5 * bought["dollar_value"].sum().loc[chosen].to_numpy(),
        }
    )
    return pd.concat([lines, returns], ignore_index=True)


def model_view(customers: pd.DataFrame, steps: FeatureModel, feature: str) -> pd.Series:
    """A feature as the model saw it (filled, capped, transformed), before scaling."""
    values = customers[feature].astype(float).fillna(steps.fill)
    if steps.fences:
        values = values.clip(*steps.fences)
    if steps.transform == "signed-log":
        return np.sign(values) * np.log1p(values.abs())
    return np.log1p(values.clip(lower=0)) if steps.log else values


def figures(result) -> dict:
    """What one run tells about the best customers."""
    customers = pd.read_csv(result.out_dir / "customers.csv")
    model = result.manifest.model.features
    spend, orders = customers["Spend"], customers["Frequency"]
    top = spend >= spend.quantile(0.99)
    capped = sum(
        int(((customers[f] < model[f].fences[0]) | (customers[f] > model[f].fences[1])).sum())
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
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated: cdnow,refunds")
    args = parser.parse_args()

    from segmentation.params import SegmentationParams
    from segmentation.pipeline import run_segmentation
    from segmentation.spark_engine import get_spark

    spark = get_spark()
    rows = []
    with tempfile.TemporaryDirectory(prefix="skew-") as scratch:
        folder = Path(scratch)
        lines = cdnow_lines()
        chosen = [(c, n, log) for c in args.cases.split(",") for n, log in CASES[c].items()]
        for case, name, log_features in chosen:
            source = folder / f"{case}.csv"
            if not source.exists():
                (with_refunds(lines) if case == "refunds" else lines).to_csv(source, index=False)
            runs = [
                figures(
                    run_segmentation(
                        spark,
                        str(source),
                        SegmentationParams(k=args.k, seed=seed, log_features=log_features),
                        folder / f"{case}-{name}-{seed}",
                    )
                )
                for seed in range(1, args.seeds + 1)
            ]
            first = runs[0]
            aris = [agreement(a["labels"], b["labels"]) for a, b in itertools.combinations(runs, 2)]
            rows.append(
                [
                    case,
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
            "case",
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
