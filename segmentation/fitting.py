"""Segmentations of a prepared table: centres for every k, then each batch of k measured,
profiled, named and sampled for the charts over all customers.

A batch of one k is a single run; a sweep runs its k in a few batches so that the first ones
can be shown while the rest are measured. Either way a k gets the same figures: the centres
come from the same fit (the driver sample, or Spark ML on every customer) and seed, and every
figure is computed over every customer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from segmentation import metrics
from segmentation.kmeans import (
    SAMPLE_ROWS,
    Fit,
    cluster_of,
    fit_centres,
    fit_every_customer,
    nearest,
    principal_axes,
    sample_rows,
)
from segmentation.manifest import Quality
from segmentation.measurement import (
    ClusterProfile,
    Memberships,
    label,
    memberships,
    profiles,
    supplement,
)
from segmentation.preparation import PreparedData
from segmentation.profiles import (
    SavedSegment,
    SegmentProfile,
    name_segments,
    order_key,
    profiles_frame,
    reason,
)
from segmentation.rfm import ROLES as RFM_ROLES
from segmentation.validation import ValidationReport

if TYPE_CHECKING:
    from pyspark.ml.clustering import KMeansModel

CHART_SAMPLE_ROWS = 5000
MIN_CHART_ROWS = 100  # per segment, when it has them


@dataclass
class Segmentation:
    """One fitted k: its centres, quality figures, named segments and chart sample."""

    k: int
    centres: np.ndarray  # k x features, standardized
    quality: Quality
    segments: pd.DataFrame  # one row per segment: segments.csv
    mix: pd.DataFrame  # segment, column, value, count: categorical_mix.csv
    order: dict[int, int]  # cluster id -> segment number (1 = highest spend)
    notes: list[str]
    rfm: pd.DataFrame | None = None  # segment, rfm_segment, customers: rfm_overlap.csv
    sample: pd.DataFrame | None = None  # customers the charts draw (chart_sample.parquet)
    spark_model: KMeansModel | None = None  # Spark ML's, when fitted on every customer

    @property
    def names(self) -> dict[int, str]:
        return dict(zip(self.segments["segment"], self.segments["name"], strict=True))

    def segment_of(self, columns: Sequence[str]) -> Column:
        """Each customer's segment number, from the standardized `columns`."""
        return segment_expr(self.order, cluster_of(columns, self.centres))

    def name_of(self, segment: Column) -> Column:
        """The name of a segment number column."""
        names = self.names
        return F.element_at(
            F.array(*[F.lit(names.get(s)) for s in range(1, max(names) + 1)]), segment
        )


@dataclass
class Centres:
    """The centres of every k, fitted on one driver sample or, by Spark ML, on every customer
    (the sample also gives the charts their customers and principal axes)."""

    sample: pd.DataFrame  # the customers drawn to the driver, with what the charts show
    columns: list[str]  # the standardized features in the sample
    axes: np.ndarray  # features x components
    every_customer: DataFrame | None = None  # set when Spark ML fits on all of them instead
    rows: int = 0  # customers in the table
    by_k: dict[int, np.ndarray] = field(default_factory=dict)
    fits: dict[int, Fit] = field(default_factory=dict)  # how each k's fit ended
    seconds: dict[int, float] = field(default_factory=dict)  # time each k's fit took

    @property
    def fitted_on(self) -> int:
        return self.rows if self.every_customer is not None else len(self.sample)

    def fit(self, ks: Sequence[int], seed: int, max_iter: int) -> None:
        """Fit the centres of each k in `ks`, on the sample or on every customer."""
        x = self.sample[self.columns].to_numpy(float)
        for k in ks:
            started = time.perf_counter()
            if self.every_customer is not None:
                fitted = fit_every_customer(self.every_customer, self.columns, k, seed, max_iter)
            else:
                fitted = fit_centres(x, k, seed, max_iter)
            self.by_k[k], self.fits[k] = fitted.centres, fitted
            self.seconds[k] = round(time.perf_counter() - started, 3)


def segment_columns(k: int | None) -> dict[str, str]:
    """The columns of customers.csv holding a segment and its name: plain for a single run,
    suffixed with the k in a sweep's file, which holds every k."""
    suffix = f"_k{k}" if k else ""
    return {"segment": f"segment{suffix}", "segment_name": f"segment_name{suffix}"}


def customers_table(
    data: PreparedData, found: Sequence[Segmentation], per_k: bool = False
) -> DataFrame:
    """Every input column plus each segmentation's segment number and name, then the RFM
    scores and segment (when the features hold Recency, Frequency and Spend)."""
    picked = [F.col(f"`{c}`") for c in data.report.columns]
    for seg in found:
        names = segment_columns(seg.k if per_k else None)
        segment = seg.segment_of(data.model_cols)
        picked += [
            segment.alias(names["segment"]),
            seg.name_of(segment).alias(names["segment_name"]),
        ]
    if data.rfm:
        picked += [column.alias(name) for name, column in data.rfm.scores().items()]
    return data.scaled.select(*picked)


def segment_expr(order: Mapping[int, int], cluster: Column) -> Column:
    """The segment number (1 = highest spend) of a KMeans cluster id column (null for an id
    without a segment)."""
    numbers = F.array(*[F.lit(order.get(c)).cast("int") for c in range(max(order) + 1)])
    return F.element_at(numbers, cluster + 1)


def chart_columns(data: PreparedData) -> list[Column]:
    """What the charts show of a customer: features in real units, categories, id."""
    report = data.report
    keep = [F.col(v).alias(f) for f, v in data.value_columns.items()]
    keep += [F.col(f"`{c}`") for c in report.categorical]
    if report.id_column:
        keep.append(F.col(f"`{report.id_column}`").cast("string"))
    return keep


def draw_sample(data: PreparedData, seed: int, fit: str = "sample") -> Centres:
    """A random sample of at most SAMPLE_ROWS customers, which gives the charts their customers
    and principal axes and, unless `fit` is "full" (Spark ML on every customer), every k's
    centres; no centres yet."""
    sample = sample_rows(
        data.scaled, [*data.model_cols, *chart_columns(data)], data.rows_out, SAMPLE_ROWS, seed
    )
    x = sample[data.model_cols].to_numpy(float)
    return Centres(
        sample=sample,
        columns=list(data.model_cols),
        axes=principal_axes(x, min(3, len(data.model_cols))),
        every_customer=data.scaled if fit == "full" else None,
        rows=data.rows_out,
    )


def measure(data: PreparedData, centres: Centres, ks: Sequence[int]) -> tuple[Memberships, dict]:
    """The two exact passes for the k of a batch. Labels of the k before the batch (when fitted)
    come along, so that how segments split from each k to the next is counted too."""
    previous = {min(ks) - 1} & set(centres.by_k)
    measured = memberships(
        data.scaled,
        data.model_cols,
        {k: centres.by_k[k] for k in sorted(set(ks) | previous)},
        data.report.categorical,
        data.rfm.scores()["rfm_segment"] if data.rfm else None,
    )
    profiled = profiles(
        data.scaled,
        data.model_cols,
        data.value_columns,
        {k: centres.by_k[k] for k in ks},
        measured.stats,
    )
    return measured, profiled


def describe(
    data: PreparedData,
    centres: Centres,
    ks: Sequence[int],
    measured: Memberships,
    profiled: Mapping[int, Mapping[int, ClusterProfile]],
    seed: int,
    saved: Sequence[SavedSegment] | None = None,
) -> dict[int, Segmentation]:
    """Quality, named segments and a chart sample for each k of a measured batch.

    `saved` keeps a saved segmentation's numbers, names and RFM names (one per centre, in order)
    instead of numbering by spend and naming afresh: customers placed in it keep its segments.
    """
    found = {
        k: _segmentation(
            data,
            k,
            centres,
            measured.stats[k],
            profiled[k],
            measured.mix.get(k),
            measured.rfm.get(k),
            saved,
        )
        for k in ks
    }
    _add_chart_samples(data, centres, found, seed)
    return found


def _fit_kind(centres: Centres) -> str:
    """How the centres were fitted, in the analyst's words."""
    rows, fitted_on = centres.rows, centres.fitted_on
    if centres.every_customer is not None:
        return f"centres fitted by Spark ML KMeans (k-means||) on all {rows:,} customers"
    if fitted_on >= rows:
        return f"centres fitted on all {rows:,} customers"
    return (
        f"centres fitted on a random sample of {fitted_on:,} of {rows:,} customers; "
        "every customer is assigned and every figure is computed over all of them"
    )


def _quality(
    k: int, stats: list[metrics.ClusterStats], silhouette_sum: float, rows: int, centres: Centres
) -> Quality:
    fitted = centres.fits.get(k)
    return Quality(
        silhouette=silhouette_sum / rows if len(stats) > 1 else None,
        silhouette_kind="squared Euclidean silhouette, over every customer",
        within_ss=metrics.within_ss(stats),
        calinski_harabasz=metrics.calinski_harabasz(stats),
        davies_bouldin=metrics.davies_bouldin(stats),
        k_requested=k,
        segments_found=len(stats),
        fitted_on=centres.fitted_on,
        fit_kind=_fit_kind(centres),
        iterations=fitted.iterations if fitted else None,
        converged=fitted.converged if fitted else None,
    )


def _segmentation(
    data: PreparedData,
    k: int,
    centres: Centres,
    stats: list[metrics.ClusterStats],
    profiled: Mapping[int, ClusterProfile],
    mix: pd.DataFrame | None,
    rfm: pd.DataFrame | None,
    saved: Sequence[SavedSegment] | None = None,
) -> Segmentation:
    """Profile and name the segments of one k, numbered by descending spend (or as saved)."""
    report = data.report
    quality = _quality(
        k,
        stats,
        sum(p.silhouette_sum for p in profiled.values()),
        data.rows_out,
        centres,
    )
    top = _top_values(mix)
    cells = _rfm_cells(rfm)
    segments = [
        SegmentProfile(
            segment=s.cluster,
            size=s.size,
            share=s.size / data.rows_out,
            stats=profiled[s.cluster].values,
            z={f: float(s.mean[i]) for i, f in enumerate(report.features)},
            top_values=top.get(s.cluster, {}),
            scores=_median_scores(data, profiled[s.cluster].values),
            rfm=cells.get(s.cluster, {}),
        )
        for s in stats
    ]
    order = _number_and_name(segments, report, saved)
    notes = []
    if saved and len(stats) < len(saved):
        empty = [f"{kept.number} · {kept.name}" for c, kept in enumerate(saved) if c not in order]
        notes.append(f"No customer of this file falls in {', '.join(empty)}.")
    elif len(stats) < k:
        notes.append(
            f"KMeans found only {len(stats)} distinct segments for k={k}: the data has too few "
            "distinct customers to split further."
        )
    mix_rows = [
        {"segment": p.segment, "column": column, "value": value, "count": count}
        for p in segments
        for column, values in p.top_values.items()
        for value, count in values
    ]
    return Segmentation(
        k=k,
        centres=centres.by_k[k],
        quality=replace(quality, sizes={p.segment: p.size for p in segments}),
        segments=profiles_frame(segments, report.features),
        mix=pd.DataFrame(mix_rows, columns=["segment", "column", "value", "count"]),
        order=order,
        notes=notes,
        rfm=_overlap(rfm, order),
        spark_model=centres.fits[k].model if k in centres.fits else None,
    )


def _number_and_name(
    segments: list[SegmentProfile],
    report: ValidationReport,
    saved: Sequence[SavedSegment] | None,
) -> dict[int, int]:
    """Number the segments (1 = highest spend) and name them, or keep the saved numbers, names
    and the RFM segments the names came from; returns cluster id -> segment number."""
    if saved:
        order = {s.segment: saved[s.segment].number for s in segments}
        for profile in segments:
            kept = saved[profile.segment]
            profile.segment, profile.name = kept.number, kept.name
            profile.rfm_name = kept.rfm_name if profile.rfm else ""
            profile.reason = reason(profile, report.mapping)
        segments.sort(key=lambda p: p.segment)
        return order
    segments.sort(key=order_key(report.mapping.get("spend"), report.features))
    order = {}
    for number, profile in enumerate(segments, start=1):
        order[profile.segment] = number
        profile.segment = number
    name_segments(segments, report.mapping)
    return order


def _median_scores(data: PreparedData, values: Mapping[str, Mapping[str, float]]) -> dict[str, int]:
    """A segment's median R, F and M scores: the scores of its median Recency, Frequency and
    Spend (a score never falls as its value rises, or for R never rises), so no extra pass."""
    if data.rfm is None:
        return {}
    mapping = data.report.mapping
    return {
        score: data.rfm.score(role, values[mapping[role]]["median"])
        for score, role in zip(("r_score", "f_score", "m_score"), RFM_ROLES, strict=True)
    }


def _rfm_cells(rfm: pd.DataFrame | None) -> dict[int, dict[str, int]]:
    """Per cluster, how many of its customers each RFM segment holds."""
    if rfm is None:
        return {}
    return {
        int(cluster): dict(zip(rows["rfm_segment"], rows["count"].astype(int), strict=True))
        for cluster, rows in rfm.groupby("cluster")
    }


def _overlap(rfm: pd.DataFrame | None, order: Mapping[int, int]) -> pd.DataFrame | None:
    """How many customers of each segment fall in each RFM segment."""
    if rfm is None:
        return None
    table = pd.DataFrame(
        {
            "segment": rfm["cluster"].map(order).astype("int64"),
            "rfm_segment": rfm["rfm_segment"],
            "customers": rfm["count"].astype("int64"),
        }
    )
    return table.sort_values(["segment", "rfm_segment"], ignore_index=True)


def _top_values(mix: pd.DataFrame | None) -> dict[int, dict[str, list[tuple[str, int]]]]:
    """Per cluster and categorical column, its values with their counts, most frequent first."""
    result: dict[int, dict[str, list[tuple[str, int]]]] = {}
    if mix is None:
        return result
    ordered = mix.assign(negative=-mix["count"]).sort_values(
        ["cluster", "column", "negative", "value"]
    )
    for row in ordered.itertuples():
        result.setdefault(int(row.cluster), {}).setdefault(row.column, []).append(
            (row.value, int(row.count))
        )
    return result


def chart_fractions(sizes: Mapping[int, int]) -> dict[int, float]:
    """Stratified: proportional shares of ~5,000 customers, at least 100 per segment when it
    has them."""
    total = sum(sizes.values())
    fractions = {}
    for cluster, size in sizes.items():
        target = max(CHART_SAMPLE_ROWS * size / total, min(size, MIN_CHART_ROWS))
        fractions[cluster] = min(1.0, target / size) if size else 0.0
    return fractions


def _add_chart_samples(
    data: PreparedData, centres: Centres, found: Mapping[int, Segmentation], seed: int
) -> None:
    """The customers each k's charts draw, stratified by segment, with principal components.

    They come from the driver sample, which holds every customer of a small table and enough of
    any segment over 0.2% of a large one; only the customers of smaller segments are drawn by
    one more Spark pass (all k of the batch at once)."""
    report = data.report
    rng = np.random.default_rng(seed)
    sample = centres.sample
    x = sample[data.model_cols].to_numpy(float)
    picked: dict[int, list[pd.DataFrame]] = {k: [] for k in found}
    short: dict[int, dict[int, float]] = {}
    for k, seg in found.items():
        sizes = {c: seg.quality.sizes[n] for c, n in seg.order.items()}
        fractions = chart_fractions(sizes)
        labels = nearest(x, centres.by_k[k])
        for cluster, size in sizes.items():
            members = np.flatnonzero(labels == cluster)
            wanted = round(fractions[cluster] * size)
            if len(members) < wanted:
                short.setdefault(k, {})[cluster] = fractions[cluster]
                continue
            chosen = rng.permutation(members)[:wanted]
            picked[k].append(sample.iloc[np.sort(chosen)].assign(**{label(k): cluster}))
    if short:
        drawn = supplement(
            data.scaled, data.model_cols, centres.by_k, short, chart_columns(data), seed
        )
        for k, clusters in short.items():
            rows = drawn[drawn[f"__take{k}"] & drawn[label(k)].isin(list(clusters))]
            picked[k].append(rows)
    columns = [
        "segment",
        "segment_name",
        *report.features,
        *[f"pc{i + 1}" for i in range(centres.axes.shape[1])],
        *report.categorical,
        *([report.id_column] if report.id_column else []),
    ]
    for k, seg in found.items():
        rows = pd.concat(picked[k], ignore_index=True)
        components = rows[data.model_cols].to_numpy(float) @ centres.axes
        for i in range(centres.axes.shape[1]):
            rows[f"pc{i + 1}"] = components[:, i]
        rows["segment"] = rows[label(k)].map(seg.order).astype("int64")
        rows["segment_name"] = rows["segment"].map(seg.names)
        seg.sample = rows[columns].sort_values("segment", kind="stable").reset_index(drop=True)
