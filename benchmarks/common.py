"""What the benchmarks share: cached synthetic inputs, the warm SparkSession, a peak-memory
sampler, stage clocks, scikit-learn's version of the pipeline's steps and table printing.

Every benchmark runs as a script (`python benchmarks/bench_*.py`) and prints medians, never
asserts: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psutil

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "benchmarks" / "data"  # git ignores it
FEATURES = ["Age", "Spend", "Recency", "Frequency"]
SEGMENTS = 4  # latent segments in the generated customer tables, and the k of single runs
SEED = 42
WARMUP_ROWS = 10_000
LINES_PER_CUSTOMER = 15.6  # order lines per customer in write_transactions' logs
SAMPLE_EVERY = 0.05  # seconds between memory samples
MB = 2**20

T = TypeVar("T")


# Inputs ---------------------------------------------------------------------------------------


def _generated(path: Path, write: Callable[[Path], object]) -> Path:
    """`path`, written by `write` the first time it is asked for (the writers are atomic)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        write(path)
        print(
            f"  generated {path} ({path.stat().st_size / MB:,.0f} MB) "
            f"in {time.perf_counter() - started:.1f}s",
            flush=True,
        )
    return path


def customers_file(data_dir: Path, rows: int) -> Path:
    """The cached synthetic customer table of `rows` customers (write_customers, seed 0)."""
    from segmentation.synthetic import write_customers

    return _generated(
        data_dir / f"customers_{rows}.csv",
        lambda path: write_customers(path, rows, segments=SEGMENTS, seed=0),
    )


def customers_for_lines(lines: int) -> int:
    """How many customers write_transactions needs for about `lines` order lines."""
    return max(1, round(lines / LINES_PER_CUSTOMER))


def transactions_file(data_dir: Path, customers: int) -> Path:
    """The cached synthetic order log of `customers` customers (write_transactions, seed 0)."""
    from segmentation.synthetic import write_transactions

    return _generated(
        data_dir / f"transactions_{customers}_customers.csv",
        lambda path: write_transactions(path, customers, seed=0),
    )


# Measuring ------------------------------------------------------------------------------------


class PeakMemory:
    """Samples RSS of this process and all its children (the JVM is one) in a background thread.

    Keeps the peak of the sum and, separately, the peaks of Python alone and of the children,
    and Python's RSS when sampling started, to tell how much Python itself grew.
    """

    def __init__(self, interval: float = SAMPLE_EVERY) -> None:
        self.interval = interval
        self.peak_bytes = self.peak_python_bytes = self.peak_children_bytes = 0
        self.python_start_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        python = me.memory_info().rss
        children = 0
        for child in me.children(recursive=True):
            # A child may end between listing and reading it.
            with contextlib.suppress(psutil.Error):
                children += child.memory_info().rss
        self.peak_bytes = max(self.peak_bytes, python + children)
        self.peak_python_bytes = max(self.peak_python_bytes, python)
        self.peak_children_bytes = max(self.peak_children_bytes, children)

    def _sample_until_stopped(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                break

    def __enter__(self) -> PeakMemory:
        self.python_start_bytes = psutil.Process().memory_info().rss
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / MB

    @property
    def python_mb(self) -> float:
        return self.peak_python_bytes / MB

    @property
    def jvm_mb(self) -> float:
        """All child processes; in local mode that is the JVM."""
        return self.peak_children_bytes / MB

    @property
    def python_growth_mb(self) -> float:
        """How far Python's RSS rose above where it was when sampling started."""
        return (self.peak_python_bytes - self.python_start_bytes) / MB


def measure(work: Callable[[], T]) -> tuple[T, float, PeakMemory]:
    """Run `work` once: its result, wall seconds and the memory it took (after a gc)."""
    gc.collect()
    with PeakMemory() as memory:
        started = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - started
    return result, seconds, memory


class Laps:
    """Wall seconds of stages that follow one another: call it with a stage's name as it ends."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.started = self._last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = self.stages.get(stage, 0.0) + now - self._last
        self._last = now

    @property
    def seconds(self) -> float:
        return self._last - self.started


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A fresh temporary folder for a run's results, deleted afterwards whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# Spark ----------------------------------------------------------------------------------------


def start_spark(warm_up: Callable[[object], object]):
    """The process's SparkSession, started and warmed by `warm_up(spark)`; neither is counted."""
    from segmentation.session import get_spark

    print("starting Spark and warming it up ...", flush=True)
    started = time.perf_counter()
    spark = get_spark()
    warm_up(spark)
    print(f"  ready in {time.perf_counter() - started:.1f}s (not counted)", flush=True)
    return spark


@dataclass
class Run:
    """One timed run of one engine: wall seconds, seconds per stage, silhouette, peak RSS."""

    seconds: float
    stages: dict[str, float]
    silhouette: float = float("nan")
    peak_mb: float = float("nan")  # Python + children
    python_mb: float = float("nan")
    jvm_mb: float = float("nan")  # all child processes; in local mode that is the JVM
    python_growth_mb: float = float("nan")
    extra: dict = field(default_factory=dict)

    @classmethod
    def measured(cls, seconds: float, stages: dict, memory: PeakMemory, **fields) -> Run:
        """A run from its seconds, stages and what PeakMemory saw."""
        return cls(
            seconds,
            dict(stages),
            peak_mb=memory.peak_mb,
            python_mb=memory.python_mb,
            jvm_mb=memory.jvm_mb,
            python_growth_mb=memory.python_growth_mb,
            **fields,
        )


@dataclass
class SizeResult:
    """Every run of both engines on one input size."""

    rows: int
    spark: list[Run] = field(default_factory=list)
    sklearn: list[Run] = field(default_factory=list)

    def engines(self) -> list[tuple[str, list[Run]]]:
        """(engine name, its runs) for the per-stage table."""
        return [("spark", self.spark), ("sklearn", self.sklearn)]


def spark_segmentation(spark, path: Path, k: int = SEGMENTS) -> Run:
    """One run of the real pipeline into a fresh directory that is deleted afterwards."""
    from segmentation.pipeline import run_segmentation
    from segmentation.preparation import SegmentationParams

    with scratch_dir("bench-segmentation-") as scratch:
        result, seconds, memory = measure(
            lambda: run_segmentation(
                spark, str(path), SegmentationParams(k=k, seed=SEED), out_dir=scratch / "run"
            )
        )
    manifest = result.manifest
    return Run.measured(
        seconds,
        manifest.get("timings", {}),
        memory,
        silhouette=number_or_nan(manifest.get("metrics", {}).get("silhouette")),
        extra={"rows_out": manifest.get("rows_out")},
    )


def number_or_nan(value) -> float:
    return float("nan") if value is None else float(value)


# scikit-learn ---------------------------------------------------------------------------------


def sklearn_prepare(path: Path, laps: Laps):
    """The pipeline's preparation by pandas and scikit-learn: read, impute medians, cap at
    1.5 IQR, standardize. Returns the capped values (real units) and the scaled array."""
    import pandas as pd
    from sklearn.preprocessing import StandardScaler

    customers = pd.read_csv(path)
    laps("loading")
    values = customers[FEATURES].astype(float)
    values = values.fillna(values.median())
    q1, q3 = values.quantile(0.25), values.quantile(0.75)
    iqr = q3 - q1
    values = values.clip(lower=q1 - 1.5 * iqr, upper=q3 + 1.5 * iqr, axis=1)
    laps("preprocessing")
    scaled = StandardScaler().fit_transform(values.to_numpy())
    laps("scaling")
    return values, scaled


def sklearn_kmeans(scaled, k: int):
    """Each row's cluster from scikit-learn's KMeans with its defaults (k-means++, n_init='auto'),
    as a competent user would call it."""
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, random_state=SEED).fit_predict(scaled)


def sklearn_silhouette(scaled, labels) -> float:
    """Squared Euclidean silhouette over every row, like Spark's and ours, in O(n·k) with numpy:
    the mean squared distance to cluster C is |x|² - 2 x·mean_C + mean_C(|y|²)."""
    import numpy as np

    clusters = np.unique(labels)
    if len(clusters) < 2:
        return float("nan")
    squared = (scaled * scaled).sum(1)
    sizes = np.array([(labels == c).sum() for c in clusters], dtype=float)
    means = np.array([scaled[labels == c].mean(0) for c in clusters])
    mean_sq = np.array([squared[labels == c].mean() for c in clusters])
    to_cluster = squared[:, None] - 2 * scaled @ means.T + mean_sq[None]
    own = np.searchsorted(clusters, labels)
    rows = np.arange(len(labels))
    size = sizes[own]
    inside = to_cluster[rows, own] * size / np.maximum(size - 1, 1)
    to_cluster[rows, own] = np.inf
    nearest = to_cluster.min(1)
    larger = np.maximum(inside, nearest)
    score = np.where(
        (size > 1) & (larger > 0), (nearest - inside) / np.where(larger > 0, larger, 1), 0
    )
    return float(score.mean())


# Arguments and printing -----------------------------------------------------------------------


def counts(text: str) -> list[int]:
    """'10000,1_000_000' -> [10000, 1000000] (argparse type for sizes)."""
    return [int(size.replace("_", "")) for size in text.split(",") if size.strip()]


def add_common_arguments(parser: argparse.ArgumentParser, repeats: int) -> None:
    """--repeats and --data-dir, the options every benchmark takes."""
    parser.add_argument(
        "--repeats", type=int, default=repeats, help=f"runs per engine and size ({repeats})"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DATA_DIR,
        help="where the generated inputs are cached (default benchmarks/data, git-ignored)",
    )


def print_machine() -> None:
    """Cores, memory and load: what the figures below depend on."""
    print(
        f"machine: {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.1f} GB, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )


def print_load() -> None:
    """The load at the end, to judge how noisy the figures are."""
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} over 1 min")


def median(values: Iterable[float]) -> float:
    """The median of the runs' figures (medians, as single runs are noisy)."""
    return statistics.median(values)


def goal(met: bool, text: str) -> str:
    """'ratio <= 2.5 (met)': a goal and whether this run reached it."""
    return f"{text} ({'met' if met else 'missed'})"


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> None:
    """An aligned text table; the last `left` columns (text, like the goal) align left."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    first_left = len(columns) - left

    def line(cells: Sequence[str]) -> str:
        return " | ".join(
            cell.ljust(width) if i >= first_left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    header = line(columns)
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        print(line(row))


def print_stages(rows: Iterable[tuple[int, str, list[Run]]]) -> None:
    """Where the time goes: per (size, engine, runs), the median seconds of each stage."""
    print("\nmedian seconds per stage")
    for size, engine, runs in rows:
        if runs:
            print(f"  {size:>10,} {engine:<7} {stage_medians([run.stages for run in runs])}")


def stage_medians(stages: Sequence[dict[str, float]]) -> str:
    """'loading 0.52, validating 1.10, ...': median seconds per stage over runs, in run order."""
    names = list(dict.fromkeys(name for run in stages for name in run))
    return ", ".join(
        f"{name} {statistics.median(run.get(name, 0.0) for run in stages):.2f}" for name in names
    )
