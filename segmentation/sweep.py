"""The k explorer: fit every k of a range on one cached table, compare them, suggest one.

Layout of a sweep's results folder: `manifest.json` (per-k metrics, the suggestion and why),
`sweep.csv`, `splits.csv` (how segments split from k to k+1) and one ordinary results folder per
k, `k=2/`, `k=3/`, ..., so switching k in the app only reads small files that already exist.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from segmentation import pipeline
from segmentation.kmeans import Fit, cluster_of
from segmentation.pipeline import (
    Progress,
    ProgressCallback,
    SegmentationParams,
    segment_expr,
)
from segmentation.results import MANIFEST, SPLITS, SWEEP_TABLE, jsonable, k_folder

TINY_SHARE = 0.01  # a segment under 1% of customers is flagged


@dataclass
class SweepResult:
    """A finished sweep: its folder, manifest and per-k table."""

    out_dir: Path
    manifest: dict
    table: pd.DataFrame


def knee(ks: list[int], within: list[float]) -> int:
    """The elbow of the sum-of-squares curve: the k farthest below the straight line joining
    the first and last points, both axes scaled to 0..1 (the 'Kneedle' rule)."""
    if len(ks) < 3:
        return ks[0]
    x = (np.array(ks, float) - ks[0]) / (ks[-1] - ks[0])
    span = within[0] - within[-1]
    if span <= 0:
        return ks[0]
    y = (np.array(within, float) - within[-1]) / span
    distance = (1 - x) - y  # chord from (0, 1) to (1, 0) minus the curve
    return ks[int(np.argmax(distance))]


def suggest(table: pd.DataFrame) -> tuple[int, str, dict[str, int]]:
    """Suggested k with its reason: best silhouette, elbow and Calinski–Harabasz as second opinions.

    A k whose smallest segment holds under 1% of customers is only suggested when every k does.
    """
    usable = table[~table["tiny_segment"]] if (~table["tiny_segment"]).any() else table
    scored = usable.dropna(subset=["silhouette"])
    opinions = {"elbow": knee(list(table["k"]), list(table["within_ss"]))}
    if len(scored):
        best = scored.loc[scored["silhouette"].idxmax()]
        opinions["silhouette"] = int(best["k"])
    ch = usable.dropna(subset=["calinski_harabasz"])
    if len(ch):
        opinions["calinski_harabasz"] = int(ch.loc[ch["calinski_harabasz"].idxmax(), "k"])
    k = opinions.get("silhouette", opinions["elbow"])
    parts = []
    if "silhouette" in opinions:
        parts.append(f"k={k} has the best silhouette ({scored['silhouette'].max():.3f})")
    else:
        parts.append(f"no silhouette could be computed, so the elbow k={k} is suggested")
    agree = [name for name, value in opinions.items() if value == k and name != "silhouette"]
    differ = {name: value for name, value in opinions.items() if value != k}
    labels = {"elbow": "the elbow of the sum of squares", "calinski_harabasz": "Calinski–Harabasz"}
    if agree:
        parts.append(" and ".join(labels[a] for a in agree) + " agree")
    if differ:
        parts.append(
            "but "
            + " and ".join(f"{labels[a]} points to k={v}" for a, v in differ.items())
            + ": compare those segmentations before choosing"
        )
    tiny = list(table.loc[table["tiny_segment"], "k"])
    if tiny:
        parts.append(
            f"k={', '.join(map(str, tiny))} produce a segment under {TINY_SHARE:.0%} of customers"
        )
    return k, "; ".join(parts) + ".", opinions


def adjusted_rand(counts: pd.DataFrame) -> float:
    """Adjusted Rand index from a contingency table with columns a, b, n."""

    def pairs(values) -> float:
        values = np.asarray(values, float)
        return float((values * (values - 1) / 2).sum())

    total = counts["n"].sum()
    index = pairs(counts["n"])
    rows = pairs(counts.groupby("a")["n"].sum())
    cols = pairs(counts.groupby("b")["n"].sum())
    expected = rows * cols / (total * (total - 1) / 2)
    maximum = (rows + cols) / 2
    return 1.0 if maximum == expected else (index - expected) / (maximum - expected)


def _stability(data, fits: dict[int, Fit], params: SegmentationParams) -> dict[int, dict]:
    """Refit every k with other seeds: the spread of silhouettes and the agreement (ARI) with the
    main fit, from one contingency pass per extra seed."""
    silhouettes = {k: [fit.silhouette] for k, fit in fits.items()}
    aris: dict[int, list[float]] = {k: [] for k in fits}
    for extra in range(1, params.stability_seeds + 1):
        seed = params.seed + extra
        sample = pipeline.driver_sample(data, seed)
        others = {k: pipeline.fit_segments(data, sample, k, seed, params.max_iter) for k in fits}
        pairs = F.explode(
            F.array(
                *[
                    F.struct(
                        F.lit(k).alias("k"),
                        cluster_of(data.model_cols, fit.centres).alias("a"),
                        cluster_of(data.model_cols, others[k].centres).alias("b"),
                    )
                    for k, fit in fits.items()
                ]
            )
        ).alias("p")
        counts = (data.scaled.select(pairs).groupBy("p.k", "p.a", "p.b").count().toPandas()).rename(
            columns={"count": "n"}
        )
        for k, other in others.items():
            silhouettes[k].append(other.silhouette)
            aris[k].append(adjusted_rand(counts[counts["k"] == k]))
    result = {}
    for k in fits:
        values = [v for v in silhouettes[k] if v is not None]
        result[k] = {
            "seeds": params.stability_seeds + 1,
            "silhouette_min": min(values) if values else None,
            "silhouette_max": max(values) if values else None,
            "ari_mean": float(np.mean(aris[k])) if aris[k] else None,
            "ari_min": float(min(aris[k])) if aris[k] else None,
        }
    return result


def _splits(data, fits: dict[int, Fit], orders: dict[int, dict[int, int]]) -> pd.DataFrame:
    """How many customers of each segment at k land in each segment at k+1."""
    ks = sorted(fits)
    segments = {
        k: segment_expr(orders[k], cluster_of(data.model_cols, fits[k].centres)) for k in ks
    }
    counted = [
        data.scaled.groupBy(segments[k].alias("source"), segments[k + 1].alias("target"))
        .count()
        .toPandas()
        .assign(k=k)
        for k in ks[:-1]
    ]
    frame = pd.concat(counted, ignore_index=True)[["k", "source", "target", "count"]]
    return frame.sort_values(["k", "source", "target"]).reset_index(drop=True)


def run_sweep(
    spark: SparkSession,
    source: str,
    params: SegmentationParams,
    out_dir: str | Path,
    progress: ProgressCallback | None = None,
) -> SweepResult:
    """Fit every k of params.k_range on one prepared table; write per-k results and a summary."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; results are never overwritten.")
    ks = params.k_values
    tracker = Progress(progress)
    data = pipeline.prepare(spark, source, params, tracker, min(ks))
    ks = [k for k in ks if k <= data.rows_out]
    partial = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir(parents=True)
    try:
        rows, fits, orders, segmentations = [], {}, {}, {}
        with tracker.stage("clustering", f"Fitting {len(ks)} segmentations, k={ks[0]}..{ks[-1]}"):
            sample = pipeline.driver_sample(data, params.seed)
            for index, k in enumerate(ks):
                tracker.report(
                    index / len(ks),
                    f"k={k}: fitting ({index + 1} of {len(ks)}, {len(ks) - index - 1} left)",
                )
                started = time.perf_counter()
                fits[k] = pipeline.fit_segments(data, sample, k, params.seed, params.max_iter)
                fitted = time.perf_counter() - started
                seg = pipeline.describe(data, *pipeline.evaluate(data, fits[k]))
                quality = seg.quality
                smallest = min(quality["sizes"].values()) / data.rows_out
                rows.append(
                    {
                        "k": k,
                        "within_ss": quality["within_ss"],
                        "silhouette": quality["silhouette"],
                        "calinski_harabasz": quality["calinski_harabasz"],
                        "davies_bouldin": quality["davies_bouldin"],
                        "segments_found": quality["segments_found"],
                        "smallest_share": smallest,
                        "tiny_segment": smallest < TINY_SHARE,
                        "fit_seconds": round(fitted, 3),
                    }
                )
                orders[k], segmentations[k] = seg.order, seg
            if params.stability_seeds:
                tracker.report(0.95, "Stability check: refitting every k with other seeds")
                for row, extra in zip(rows, _stability(data, fits, params).values(), strict=True):
                    row.update(extra)
        table = pd.DataFrame(rows)

        with tracker.stage("evaluation", "Comparing the segmentations"):
            suggested, reason, opinions = suggest(table)
            splits = (
                _splits(data, fits, orders)
                if len(ks) > 1
                else pd.DataFrame(columns=["k", "source", "target", "count"])
            )

        with tracker.stage("profiling", "Preparing the charts"):
            pca = pipeline.fit_pca(data, params.seed)

        with tracker.stage("saving", "Writing the results of every k"):
            for index, k in enumerate(ks):
                tracker.report(index / len(ks), f"Writing k={k}")
                pipeline.save(
                    data,
                    segmentations[k],
                    pca,
                    params,
                    partial / k_folder(k),
                    tracker.timings,
                    lambda *_: None,
                    extra={"sweep_k": k},
                )
            table.to_csv(partial / SWEEP_TABLE, index=False)
            splits.to_csv(partial / SPLITS, index=False)
            per_k = json.loads((partial / k_folder(suggested) / MANIFEST).read_text())
            manifest = jsonable(
                {
                    **{
                        key: per_k[key]
                        for key in (
                            "format_version",
                            "created_at",
                            "input",
                            "params",
                            "features",
                            "categorical",
                            "rows_in",
                            "rows_out",
                            "repairs",
                            "warnings",
                            "versions",
                        )
                    },
                    "kind": "sweep",
                    "k_values": ks,
                    "suggested_k": suggested,
                    "suggestion": reason,
                    "opinions": opinions,
                    "sweep": table.to_dict("records"),
                    "metrics": per_k["metrics"],
                    "timings": dict(tracker.timings),
                    "files": {
                        "sweep": SWEEP_TABLE,
                        "splits": SPLITS,
                        "per_k": {str(k): k_folder(k) for k in ks},
                    },
                }
            )
            (partial / MANIFEST).write_text(json.dumps(manifest, indent=2))
        partial.rename(out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        data.release()
    manifest["timings"] = dict(tracker.timings)
    return SweepResult(out_dir, manifest, table)
