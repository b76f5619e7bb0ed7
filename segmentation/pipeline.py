"""The segmentation pipeline: load, validate, clean, scale, cluster, evaluate, profile, save.

Each stage reports progress through a callback `(stage, fraction, message)`; the fraction is the
whole run's progress from 0 to 1. The data is read twice (one statistics pass, one pass that
fills the cache) and every later step works on the cached, prepared table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.ml.feature import PCA, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from segmentation import metrics
from segmentation.errors import InputError
from segmentation.kmeans import SAMPLE_ROWS, Fit, cluster_of, fit, sample_matrix
from segmentation.profiles import SegmentProfile, name_segments, order_key, profiles_frame
from segmentation.reading import Table, number_expr
from segmentation.results import write_results
from segmentation.session import unpersist
from segmentation.transactions import TRANSACTION_FEATURES, load_customer_table, origin_messages
from segmentation.validation import ValidationReport, feature_columns, validate

ProgressCallback = Callable[[str, float, str], None]

STAGES = (
    "loading",
    "validating",
    "preprocessing",
    "features",
    "scaling",
    "clustering",
    "evaluation",
    "profiling",
    "saving",
)
_WEIGHTS = dict(zip(STAGES, (0.03, 0.17, 0.15, 0.02, 0.05, 0.25, 0.13, 0.08, 0.12), strict=True))
OUTLIER_POLICIES = ("cap", "remove", "none")
MIN_K, MAX_K = 2, 30
MAX_FEATURES = 50
CHART_SAMPLE_ROWS = 5000
PCA_SAMPLE_ROWS = 20_000
CLUSTER = "__cluster"
FEATURES = "__features"


@dataclass(frozen=True)
class SegmentationParams:
    """What the analyst chose; every field has the default a first run should use."""

    k: int = 4
    features: tuple[str, ...] | None = None  # None: Age, Spend, Recency, Frequency
    seed: int = 42
    max_iter: int = 40
    outliers: str = "cap"
    log_features: tuple[str, ...] = ()
    column_mapping: Mapping[str, str] = field(default_factory=dict)
    k_range: tuple[int, int] | None = None  # sweep every k in this range instead of one k
    stability_seeds: int = 0  # extra seeds per k in a sweep, to see which k gives stable segments
    input_kind: str = "auto"  # "customers", "transactions" (an order log) or "auto"
    transaction_roles: Mapping[str, str] = field(default_factory=dict)  # order-log columns
    date_format: str | None = None  # of an order log: iso, yyyymmdd, day-first, month-first
    reference_date: str | None = None  # ISO date Recency is counted to (default: day after last)
    attributes: str | None = None  # a customer attributes table joined to an order log

    def __post_init__(self) -> None:
        if not MIN_K <= self.k <= MAX_K:
            raise InputError(
                f"The number of segments must be between {MIN_K} and {MAX_K}; got {self.k}."
            )
        if self.outliers not in OUTLIER_POLICIES:
            raise InputError(
                f"Outlier policy '{self.outliers}' is unknown; use one of {', '.join(OUTLIER_POLICIES)}."
            )
        if self.features and len(self.features) > MAX_FEATURES:
            raise InputError(
                f"{len(self.features)} features were chosen; at most {MAX_FEATURES} can be used. "
                "Pick the columns that describe how customers buy."
            )
        if self.max_iter < 1:
            raise InputError("The number of KMeans iterations must be at least 1.")
        if self.k_range is not None:
            low, high = (int(v) for v in self.k_range)
            if not MIN_K <= low < high <= MAX_K:
                raise InputError(
                    f"A range of k must go from {MIN_K} to at most {MAX_K}, low to high; "
                    f"got {low}-{high}."
                )
            object.__setattr__(self, "k_range", (low, high))
        if not 0 <= self.stability_seeds <= 10:
            raise InputError("The stability check takes 0 to 10 extra seeds per k.")
        object.__setattr__(self, "features", tuple(self.features) if self.features else None)
        object.__setattr__(self, "log_features", tuple(self.log_features))
        object.__setattr__(self, "column_mapping", dict(self.column_mapping))
        object.__setattr__(self, "transaction_roles", dict(self.transaction_roles))
        if self.reference_date:
            try:
                date.fromisoformat(str(self.reference_date))
            except ValueError as exc:
                raise InputError(
                    f"The reference date '{self.reference_date}' is not a date like 2024-12-31."
                ) from exc

    def to_dict(self) -> dict:
        """JSON-ready form for the manifest and the job store."""
        data = asdict(self)
        data["features"] = list(self.features) if self.features else None
        data["log_features"] = list(self.log_features)
        data["k_range"] = list(self.k_range) if self.k_range else None
        return data

    @property
    def k_values(self) -> list[int]:
        """The k of a single run, or every k of a sweep."""
        return list(range(self.k_range[0], self.k_range[1] + 1)) if self.k_range else [self.k]

    @classmethod
    def from_dict(cls, data: Mapping) -> SegmentationParams:
        """Inverse of to_dict (unknown keys are ignored so old jobs still load)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class SegmentationResult:
    """A finished run: where its files are, its manifest and the segments table."""

    out_dir: Path
    manifest: dict
    segments: pd.DataFrame


class Progress:
    """Times the stages and turns within-stage progress into whole-run progress."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.timings: dict[str, float] = {}
        self._stage = STAGES[0]

    def _done_before(self, stage: str) -> float:
        return sum(_WEIGHTS[s] for s in STAGES[: STAGES.index(stage)])

    def report(self, fraction: float, message: str) -> None:
        """Tell the caller how far the current stage is (0..1) and what is happening."""
        if self.callback:
            overall = self._done_before(self._stage) + _WEIGHTS[self._stage] * fraction
            self.callback(self._stage, min(overall, 1.0), message)

    @contextmanager
    def stage(self, name: str, message: str) -> Iterator[None]:
        """Run one stage: report its start, time it."""
        self._stage = name
        self.report(0.0, message)
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 3)


def _quoted(column: str) -> Column:
    return F.col(f"`{column}`")


def _prepare(table: Table, report: ValidationReport, params: SegmentationParams):
    """Impute medians, treat outliers, log-transform: the expressions, not yet run.

    Feature values come parsed from the cached table (`__n<column>`), so no text is parsed twice.
    """
    df = table.df
    value_cols, model_cols, outlier_flags, notes = [], [], [], []
    logged = {
        c
        for c in report.features
        if c in params.log_features
        or any(c.lower() == name.lower() for name in params.log_features)
    }
    select = [_quoted(c) for c in table.columns]
    for i, column in enumerate(report.features):
        p = report.profiles[column]
        parsed = _number_column(column)
        value = F.coalesce(
            F.col(parsed) if parsed in df.columns else number_expr(df, column),
            F.lit(float(p.median)),
        )
        iqr = p.q3 - p.q1
        low, high = p.q1 - 1.5 * iqr, p.q3 + 1.5 * iqr
        if params.outliers != "none" and iqr > 0:
            outlier_flags.append((column, (value < low) | (value > high)))
            if params.outliers == "cap":
                value = F.least(F.greatest(value, F.lit(low)), F.lit(high))
        elif params.outliers != "none":
            notes.append(f"'{column}': most values are equal, so no outliers were treated.")
        select.append(value.alias(f"__v{i}"))
        value_cols.append(f"__v{i}")
        model_value = (
            F.log1p(F.greatest(F.col(f"__v{i}"), F.lit(0.0))) if column in logged else None
        )
        model_cols.append((f"__x{i}", model_value))
    for j, (_, flag) in enumerate(outlier_flags):
        select.append(flag.alias(f"__o{j}"))
    prepared = df.select(*select)
    if params.outliers == "remove" and outlier_flags:
        any_outlier = (
            F.greatest(*[F.col(f"__o{j}") for j in range(len(outlier_flags))])
            if len(outlier_flags) > 1
            else F.col("__o0")
        )
        prepared = prepared.where(~any_outlier)
    inputs = []
    for (name, expr), value_col in zip(model_cols, value_cols, strict=True):
        if expr is None:
            inputs.append(value_col)
        else:
            prepared = prepared.withColumn(name, expr)
            inputs.append(name)
    if params.log_features and not logged:
        notes.append("No chosen feature matched the columns to log-transform.")
    return prepared, value_cols, inputs, [c for c, _ in outlier_flags], sorted(logged), notes


def _standardized(column: str, counts, i: int) -> Column:
    """(x - mean) / standard deviation (the sample's, as Spark's StandardScaler); 0 when the
    feature no longer varies."""
    std = counts[f"std{i}"]
    if not std:
        return F.lit(0.0)
    return (F.col(column) - F.lit(float(counts[f"mean{i}"]))) / F.lit(float(std))


def _number_column(column: str) -> str:
    """Name of the cached, parsed-as-number copy of an input column."""
    return f"__n_{column}"


def _chart_sample_fractions(sizes: Mapping[int, int]) -> dict[int, float]:
    """Stratified: proportional shares of ~5,000 rows, at least 100 per segment when it has them."""
    total = sum(sizes.values())
    fractions = {}
    for cluster, size in sizes.items():
        target = max(CHART_SAMPLE_ROWS * size / total, min(size, 100))
        fractions[cluster] = min(1.0, target / size) if size else 0.0
    return fractions


def segment_expr(order: Mapping[int, int], cluster: Column | str = CLUSTER) -> Column:
    """The segment number (1 = highest spend) of a KMeans cluster id column (null for an id
    without a segment)."""
    cluster = F.col(cluster) if isinstance(cluster, str) else cluster
    numbers = F.array(*[F.lit(order.get(c)).cast("int") for c in range(max(order) + 1)])
    return F.element_at(numbers, cluster + 1)


@dataclass
class PreparedData:
    """The cleaned, scaled customer table, cached once and shared by every k fitted on it."""

    source: str
    table: Table
    report: ValidationReport
    scaled: DataFrame
    model_cols: list[str]  # the standardized features KMeans sees
    value_cols: list[str]
    rows_out: int
    repairs: dict
    cached: list[DataFrame]
    origin: dict | None = None  # how a customer table was built from an order log

    @property
    def dims(self) -> int:
        return len(self.model_cols)

    def release(self) -> None:
        """Free the cached table (a long-lived app must not accumulate cached data)."""
        unpersist(self.cached)


@dataclass
class Segmentation:
    """One fitted k: customers labelled with segment numbers and names, quality and profiles."""

    k: int
    labelled: DataFrame
    quality: dict
    segments: pd.DataFrame
    mix: pd.DataFrame
    sizes: dict[int, int]  # KMeans cluster id -> customers, for stratified sampling
    order: dict[int, int]  # KMeans cluster id -> segment number
    notes: list[str]


def prepare(
    spark: SparkSession, source: str, params: SegmentationParams, tracker: Progress, min_k: int
) -> PreparedData:
    """Loading to scaling: read, validate, clean, assemble and standardize; cache the result."""
    cached: list[DataFrame] = []
    try:
        with tracker.stage("loading", "Reading the file"):
            table, origin = load_customer_table(
                spark,
                source,
                params.input_kind,
                params.transaction_roles or None,
                params.date_format,
                date.fromisoformat(params.reference_date) if params.reference_date else None,
                params.attributes,
                cache=True,
            )
            if origin:
                cached.append(table.df)
                tracker.report(1.0, f"Built {origin['customers']:,} customers from the order log")
            features = params.features or (TRANSACTION_FEATURES if origin else None)
            # One read of the file: the validation pass also fills this cache, which holds the
            # input as read plus each feature parsed as a number, for every later stage.
            chosen = feature_columns(table.columns, features, params.column_mapping)
            parsed = table.df.select(
                "*", *[number_expr(table.df, c).alias(_number_column(c)) for c in chosen]
            ).cache()
            cached.append(parsed)
            table = Table(parsed, table.path, table.format, names=table.columns)

        with tracker.stage("validating", "Checking columns and values"):
            report = validate(table, min_k, features, params.column_mapping)
            report.raise_for_errors()
            tracker.report(1.0, f"{report.rows:,} customers, {len(report.features)} features")

        with tracker.stage("preprocessing", "Filling missing values and treating outliers"):
            prepared, value_cols, inputs, flagged, logged, notes = _prepare(table, report, params)

        with tracker.stage("features", "Counting customers and measuring each feature"):
            # One pass: rows left, outliers treated, and each model input's mean and standard
            # deviation for the scaling.
            counts = prepared.agg(
                F.count(F.lit(1)).alias("rows"),
                *[F.sum(F.col(f"__o{j}").cast("int")).alias(f"o{j}") for j in range(len(flagged))],
                *[F.avg(c).alias(f"mean{i}") for i, c in enumerate(inputs)],
                *[F.stddev_samp(c).alias(f"std{i}") for i, c in enumerate(inputs)],
            ).collect()[0]
            rows_out = counts["rows"]
            if rows_out < min_k:
                raise InputError(
                    f"After removing outliers only {rows_out} customers are left, fewer than the "
                    f"{min_k} segments asked for. Use the 'cap' outlier policy or fewer segments."
                )

        with tracker.stage("scaling", "Standardizing features (mean 0, standard deviation 1)"):
            model_cols = [f"__z{i}" for i in range(len(inputs))]
            scaled = prepared.select(
                "*",
                *[
                    _standardized(c, counts, i).alias(z)
                    for i, (c, z) in enumerate(zip(inputs, model_cols, strict=True))
                ],
            )
            scaled = VectorAssembler(inputCols=model_cols, outputCol=FEATURES).transform(scaled)
    except BaseException:
        unpersist(cached)
        raise
    repairs = {
        "filled_missing": {
            c: report.profiles[c].missing + report.profiles[c].non_numeric for c in report.features
        },
        "outliers": {c: counts[f"o{j}"] for j, c in enumerate(flagged)},
        "outlier_policy": params.outliers,
        "rows_removed": report.rows - rows_out,
        "log_transformed": logged,
        "notes": origin_messages(origin) + notes,
    }
    return PreparedData(
        source, table, report, scaled, model_cols, value_cols, rows_out, repairs, cached, origin
    )


def driver_sample(data: PreparedData, seed: int) -> np.ndarray:
    """The customers (standardized) KMeans centres are fitted on: all, or a random sample."""
    return sample_matrix(data.scaled, data.model_cols, data.rows_out, SAMPLE_ROWS, seed)


def fit_segments(data: PreparedData, sample: np.ndarray, k: int, seed: int, max_iter: int) -> Fit:
    """Fit k segments on the prepared table (see segmentation.kmeans)."""
    return fit(data.scaled, data.model_cols, sample, k, seed, max_iter)


def evaluate(data: PreparedData, fit: Fit) -> tuple[DataFrame, list[metrics.ClusterStats], dict]:
    """Customers with their cluster, per-cluster aggregates and the quality figures."""
    clustered = data.scaled.withColumn(CLUSTER, cluster_of(data.model_cols, fit.centres))
    stats = fit.stats
    everyone = fit.fitted_on >= data.rows_out
    quality = {
        "silhouette": fit.silhouette,
        "silhouette_kind": "squared Euclidean silhouette, over every customer",
        "within_ss": metrics.within_ss(stats),
        "calinski_harabasz": metrics.calinski_harabasz(stats),
        "davies_bouldin": metrics.davies_bouldin(stats),
        "k_requested": fit.k,
        "segments_found": len(stats),
        "fitted_on": fit.fitted_on,
        "fit_kind": (
            f"centres fitted on all {data.rows_out:,} customers"
            if everyone
            else f"centres fitted on a random sample of {fit.fitted_on:,} of "
            f"{data.rows_out:,} customers; every customer is assigned and every figure is "
            "computed over all of them"
        ),
    }
    return clustered, stats, quality


def describe(
    data: PreparedData, clustered: DataFrame, stats: list[metrics.ClusterStats], quality: dict
) -> Segmentation:
    """Profile and name the segments, number them by descending spend, label every customer."""
    report = data.report
    profiles = _profile(clustered, report, data.value_cols, stats, data.rows_out)
    profiles.sort(key=order_key(report.mapping.get("spend"), report.features))
    order = {}
    for number, profile in enumerate(profiles, start=1):
        order[profile.segment] = number
        profile.segment = number
    name_segments(profiles, report.mapping)
    names = {p.segment: p.name for p in profiles}
    labelled = clustered.withColumn("segment", segment_expr(order)).withColumn(
        "segment_name",
        F.element_at(
            F.create_map(*[x for s, n in names.items() for x in (F.lit(s), F.lit(n))]),
            F.col("segment"),
        ),
    )
    k = quality["k_requested"]
    notes = []
    if len(stats) < k:
        notes.append(
            f"KMeans found only {len(stats)} distinct segments for k={k}: the data has too few "
            "distinct customers to split further."
        )
    quality = {**quality, "sizes": {p.segment: p.size for p in profiles}}
    return Segmentation(
        k=k,
        labelled=labelled,
        quality=quality,
        segments=profiles_frame(profiles, report.features),
        mix=_mix_frame(profiles),
        sizes={s.cluster: s.size for s in stats},
        order=order,
        notes=notes,
    )


def fit_pca(data: PreparedData, seed: int = 42):
    """2-D/3-D principal components of the scaled features, for the customer-space charts.

    Fitted on a random sample of at most ~20,000 customers: plenty for two or three axes.
    """
    fraction = min(1.0, PCA_SAMPLE_ROWS / max(data.rows_out, 1))
    sample = data.scaled if fraction == 1.0 else data.scaled.sample(fraction=fraction, seed=seed)
    return PCA(k=min(3, data.dims), inputCol=FEATURES, outputCol="__pca").fit(sample)


def save(
    data: PreparedData,
    seg: Segmentation,
    pca,
    params: SegmentationParams,
    out_dir: Path,
    timings: dict[str, float],
    progress: Callable[[float, str], None],
    extra: Mapping | None = None,
) -> dict:
    """Write one segmentation's results folder (atomically) and return its manifest."""
    sample = _chart_sample(seg.labelled, data.report, data.value_cols, pca, seg.sizes, params.seed)
    repairs = {**data.repairs, "notes": data.repairs["notes"] + seg.notes}
    return write_results(
        out_dir,
        spark=data.scaled.sparkSession,
        source=data.source,
        labelled=seg.labelled,
        report=data.report,
        params=params,
        value_cols=data.value_cols,
        segments=seg.segments,
        sample=sample,
        mix=seg.mix,
        quality=seg.quality,
        repairs=repairs,
        rows_out=data.rows_out,
        timings=timings,
        progress=progress,
        extra={**({"transactions": data.origin} if data.origin else {}), **(extra or {})},
    )


def run_segmentation(
    spark: SparkSession,
    source: str,
    params: SegmentationParams,
    out_dir: str | Path,
    progress: ProgressCallback | None = None,
) -> SegmentationResult:
    """Segment the customers in `source` and write the results into `out_dir` (must not exist)."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; results are never overwritten.")
    tracker = Progress(progress)
    data = prepare(spark, source, params, tracker, params.k)
    try:
        with tracker.stage("clustering", f"Fitting KMeans with k={params.k}"):
            sample = driver_sample(data, params.seed)
            fitted = fit_segments(data, sample, params.k, params.seed, params.max_iter)
        with tracker.stage("evaluation", "Measuring segment quality"):
            clustered, stats, quality = evaluate(data, fitted)
        with tracker.stage("profiling", "Describing and naming the segments"):
            seg = describe(data, clustered, stats, quality)
        with tracker.stage("saving", "Writing the results"):
            manifest = save(
                data,
                seg,
                fit_pca(data, params.seed),
                params,
                out_dir,
                tracker.timings,
                tracker.report,
            )
        manifest["timings"] = dict(tracker.timings)
        return SegmentationResult(out_dir=out_dir, manifest=manifest, segments=seg.segments)
    finally:
        data.release()


def _profile(
    clustered: DataFrame,
    report: ValidationReport,
    value_cols: list[str],
    stats: list[metrics.ClusterStats],
    total: int,
) -> list[SegmentProfile]:
    """Per segment: mean, median, min, max of each feature in real units, and top categories."""
    aggs = []
    for i, col in enumerate(value_cols):
        aggs += [
            F.avg(col).alias(f"mean{i}"),
            F.min(col).alias(f"min{i}"),
            F.max(col).alias(f"max{i}"),
            F.percentile_approx(col, 0.5, 10000).alias(f"median{i}"),
        ]
    rows = {r[CLUSTER]: r for r in clustered.groupBy(CLUSTER).agg(*aggs).collect()}
    top = _top_values(clustered, report.categorical)
    profiles = []
    for s in stats:
        r = rows[s.cluster]
        profiles.append(
            SegmentProfile(
                segment=s.cluster,
                size=s.size,
                share=s.size / total,
                stats={
                    f: {stat: float(r[f"{stat}{i}"]) for stat in ("mean", "median", "min", "max")}
                    for i, f in enumerate(report.features)
                },
                z={f: float(s.mean[i]) for i, f in enumerate(report.features)},
                top_values=top.get(s.cluster, {}),
            )
        )
    return profiles


def _top_values(clustered: DataFrame, columns: list[str]) -> dict[int, dict[str, list]]:
    """Counts of each categorical value per segment, in one pass over all categorical columns."""
    if not columns:
        return {}
    pairs = F.explode(
        F.array(
            *[
                F.struct(
                    F.lit(c).alias("column"),
                    F.coalesce(F.trim(_quoted(c).cast("string")), F.lit("(missing)")).alias(
                        "value"
                    ),
                )
                for c in columns
            ]
        )
    ).alias("pair")
    counted = (
        clustered.select(CLUSTER, pairs)
        .groupBy(CLUSTER, "pair.column", "pair.value")
        .count()
        .collect()
    )
    result: dict[int, dict[str, list]] = {}
    for row in counted:
        result.setdefault(row[CLUSTER], {}).setdefault(row["column"], []).append(
            (row["value"], row["count"])
        )
    for per_column in result.values():
        for values in per_column.values():
            values.sort(key=lambda item: (-item[1], item[0]))
    return result


def _mix_frame(profiles: list[SegmentProfile]) -> pd.DataFrame:
    """Categorical mix as rows of (segment, column, value, count) for charts."""
    rows = [
        {"segment": p.segment, "column": column, "value": value, "count": count}
        for p in profiles
        for column, values in p.top_values.items()
        for value, count in values
    ]
    return pd.DataFrame(rows, columns=["segment", "column", "value", "count"])


def _chart_sample(
    labelled: DataFrame,
    report: ValidationReport,
    value_cols: list[str],
    pca,
    sizes: Mapping[int, int],
    seed: int,
) -> pd.DataFrame:
    """A stratified sample of at most ~5,000 customers with PCA coordinates, for the charts."""
    components = pca.getK()
    sampled = labelled.sampleBy(CLUSTER, _chart_sample_fractions(sizes), seed)
    pcs = vector_to_array(F.col("__pca"))
    keep = [F.col("segment"), F.col("segment_name")]
    keep += [F.col(v).alias(f) for v, f in zip(value_cols, report.features, strict=True)]
    keep += [pcs[i].alias(f"pc{i + 1}") for i in range(components)]
    keep += [_quoted(c) for c in report.categorical]
    if report.id_column:
        keep.append(_quoted(report.id_column).cast("string"))
    sample = pca.transform(sampled).select(*keep).toPandas()
    return sample.sort_values("segment", kind="stable").reset_index(drop=True)
