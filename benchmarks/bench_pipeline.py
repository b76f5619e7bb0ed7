"""How fast and how lean the Spark pipeline is next to scikit-learn doing the same work.

    python benchmarks/bench_pipeline.py [--sizes 10000,100000,1000000] [--repeats 3]
                                        [--data-dir benchmarks/data]

Input CSVs come from segmentation.synthetic.write_customers and are cached in --data-dir. The
SparkSession starts once and is warmed with a small run, so start-up is not counted. For each
size both engines run --repeats times on the same file; the table shows median seconds, the
Spark/scikit-learn ratio and the peak resident memory of Python plus the JVM during the Spark
runs, next to the goals at 1M rows. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import psutil
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere, without installing the package
    sys.path.insert(0, str(ROOT))

from segmentation.synthetic import write_customers  # noqa: E402

FEATURES = ["Age", "Spend", "Recency", "Frequency"]
K = 4
SEED = 42
SILHOUETTE_SAMPLE = 10_000
GOAL_ROWS = 1_000_000
GOAL_RATIO = 2.5
GOAL_PEAK_MB = 1200
SAMPLE_EVERY = 0.05  # seconds between memory samples
# Warm-up size: a full silhouette sample, whose first computation is several times slower.
WARMUP_ROWS = SILHOUETTE_SAMPLE


@dataclass
class Run:
    """One timed run of one engine: wall seconds, seconds per stage, silhouette, peak RSS."""

    seconds: float
    stages: dict[str, float]
    silhouette: float
    peak_mb: float = float("nan")  # Python + children
    python_mb: float = float("nan")
    jvm_mb: float = float("nan")  # all child processes; in local mode that is the JVM


@dataclass
class SizeResult:
    rows: int
    spark: list[Run] = field(default_factory=list)
    sklearn: list[Run] = field(default_factory=list)


class PeakMemory:
    """Samples RSS of this process and all its children (the JVM is one) in a background thread.

    Keeps the peak of the sum and, separately, the peaks of Python alone and of the children.
    """

    def __init__(self, interval: float = SAMPLE_EVERY) -> None:
        self.interval = interval
        self.peak_bytes = self.peak_python_bytes = self.peak_children_bytes = 0
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
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20


def input_file(data_dir: Path, rows: int) -> Path:
    """The cached synthetic CSV for `rows` customers, generated the first time it is asked for."""
    path = data_dir / f"customers_{rows}.csv"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        write_customers(path, rows, segments=K, seed=0)
        print(f"  generated {path} in {time.perf_counter() - started:.1f}s", flush=True)
    return path


def sklearn_segmentation(path: Path) -> Run:
    """The pipeline's work done by pandas and scikit-learn on one machine, stage by stage."""
    stages: dict[str, float] = {}
    clock = time.perf_counter()
    started = clock

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[stage] = now - clock
        clock = now

    customers = pd.read_csv(path)
    lap("loading")
    values = customers[FEATURES].astype(float)
    values = values.fillna(values.median())
    q1, q3 = values.quantile(0.25), values.quantile(0.75)
    iqr = q3 - q1
    values = values.clip(lower=q1 - 1.5 * iqr, upper=q3 + 1.5 * iqr, axis=1)
    lap("preprocessing")
    scaled = StandardScaler().fit_transform(values.to_numpy())
    lap("scaling")
    model = KMeans(n_clusters=K, n_init=1, random_state=SEED, algorithm="lloyd")
    segment = model.fit_predict(scaled)
    lap("clustering")
    silhouette = silhouette_score(
        scaled,
        segment,
        metric="sqeuclidean",
        sample_size=min(SILHOUETTE_SAMPLE, len(scaled)),
        random_state=SEED,
    )
    lap("evaluation")
    values.groupby(segment).agg(["mean", "median", "min", "max"])
    lap("profiling")
    return Run(time.perf_counter() - started, stages, float(silhouette))


def spark_segmentation(spark, path: Path) -> Run:
    """One run of the real pipeline into a fresh directory that is deleted afterwards."""
    from segmentation.pipeline import SegmentationParams, run_segmentation

    scratch = Path(tempfile.mkdtemp(prefix="bench-segmentation-"))
    try:
        with PeakMemory() as memory:
            started = time.perf_counter()
            result = run_segmentation(
                spark, str(path), SegmentationParams(k=K, seed=SEED), out_dir=scratch / "run"
            )
            seconds = time.perf_counter() - started
        manifest = result.manifest
        return Run(
            seconds,
            dict(manifest.get("timings", {})),
            float(manifest.get("metrics", {}).get("silhouette", float("nan"))),
            memory.peak_mb,
            memory.peak_python_bytes / 2**20,
            memory.peak_children_bytes / 2**20,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def wait_for_pipeline(timeout: float) -> None:
    """The pipeline module may still be being written; wait for it rather than fail at once."""
    deadline = time.monotonic() + timeout
    pipeline = ROOT / "segmentation" / "pipeline.py"
    while not pipeline.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{pipeline} did not appear within {timeout:.0f}s.")
        print(f"  waiting for {pipeline} ...", flush=True)
        time.sleep(30)


def median(runs: list[Run], pick: Callable[[Run], float]) -> float:
    return statistics.median(pick(run) for run in runs)


def print_table(results: list[SizeResult]) -> None:
    """Median seconds per engine, their ratio and the Spark run's peak memory, beside the goals."""
    header = (
        f"{'rows':>10} | {'spark s':>8} | {'sklearn s':>9} | {'spark/sk':>8} | "
        f"{'peak MB':>7} {'(py / jvm)':>12} | {'silhouette spark/sk':>19} | goal"
    )
    print()
    print(header)
    print("-" * len(header))
    for result in results:
        spark_s = median(result.spark, lambda r: r.seconds)
        sklearn_s = median(result.sklearn, lambda r: r.seconds)
        ratio = spark_s / sklearn_s
        peak = max(run.peak_mb for run in result.spark)
        split = (
            f"({max(r.python_mb for r in result.spark):.0f} / "
            f"{max(r.jvm_mb for r in result.spark):.0f})"
        )
        silhouettes = (
            f"{median(result.spark, lambda r: r.silhouette):.3f} / "
            f"{median(result.sklearn, lambda r: r.silhouette):.3f}"
        )
        goal = ""
        if result.rows == GOAL_ROWS:
            goal = (
                f"ratio <= {GOAL_RATIO} ({'met' if ratio <= GOAL_RATIO else 'missed'}), "
                f"peak <= {GOAL_PEAK_MB} MB ({'met' if peak <= GOAL_PEAK_MB else 'missed'})"
            )
        print(
            f"{result.rows:>10,} | {spark_s:>8.2f} | {sklearn_s:>9.2f} | {ratio:>8.2f} | "
            f"{peak:>7.0f} {split:>12} | {silhouettes:>19} | {goal}"
        )


def print_stages(results: list[SizeResult]) -> None:
    """Where the time goes: median seconds per stage for each engine and size."""
    print("\nmedian seconds per stage")
    for result in results:
        for engine, runs in (("spark", result.spark), ("sklearn", result.sklearn)):
            names = list(runs[0].stages)
            parts = ", ".join(
                f"{name} {statistics.median(r.stages.get(name, 0.0) for r in runs):.2f}"
                for name in names
            )
            print(f"  {result.rows:>10,} {engine:<7} {parts}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="10000,100000,1000000",
        type=lambda text: [int(size.replace("_", "")) for size in text.split(",") if size],
        help="comma-separated row counts (default: 10000,100000,1000000)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per engine and size")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT / "benchmarks" / "data",
        help="where the generated CSVs are cached (git ignores benchmarks/data)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0,
        help="seconds to wait for segmentation/pipeline.py to appear (default: do not wait)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(
        f"machine: {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.1f} GB, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("inputs:", flush=True)
    files = {rows: input_file(args.data_dir, rows) for rows in [WARMUP_ROWS, *args.sizes]}

    wait_for_pipeline(args.wait)
    from segmentation.session import get_spark

    print("starting Spark and warming it up ...", flush=True)
    started = time.perf_counter()
    spark = get_spark()
    spark_segmentation(spark, files[WARMUP_ROWS])
    sklearn_segmentation(files[WARMUP_ROWS])
    print(f"  ready in {time.perf_counter() - started:.1f}s (not counted)", flush=True)

    results = []
    for rows in args.sizes:
        result = SizeResult(rows)
        for repeat in range(1, args.repeats + 1):
            gc.collect()
            result.spark.append(spark_segmentation(spark, files[rows]))
            gc.collect()
            result.sklearn.append(sklearn_segmentation(files[rows]))
            print(
                f"  {rows:>10,} rows, run {repeat}/{args.repeats}: "
                f"spark {result.spark[-1].seconds:.2f}s "
                f"(peak {result.spark[-1].peak_mb:.0f} MB: Python "
                f"{result.spark[-1].python_mb:.0f}, JVM {result.spark[-1].jvm_mb:.0f}), "
                f"sklearn {result.sklearn[-1].seconds:.2f}s",
                flush=True,
            )
        results.append(result)

    # Other work on the machine skews timings; the load average says how much there was.
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} over 1 min")
    print_table(results)
    print_stages(results)
    print(
        "\npeak MB: resident memory of Python plus all its child processes (the JVM), sampled "
        f"every {SAMPLE_EVERY * 1000:.0f} ms during the Spark runs. Spark's silhouette covers "
        f"every customer, scikit-learn's a random {SILHOUETTE_SAMPLE:,}."
    )


if __name__ == "__main__":
    main()
