"""What the benchmarks share: cached synthetic inputs, the warm SparkSession, a peak-memory
sampler, stage clocks, scikit-learn's version of the pipeline's steps and table printing.

Every benchmark runs as a module from the repository root (`python -m benchmarks.bench_pipeline`) and prints medians, never
asserts: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import shutil
import statistics
import subprocess
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


def tree_rss(process: psutil.Process) -> int:
    """Resident memory of a process and all its children (a command line's JVM is one)."""
    total = 0
    for each in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a child may end between listing and reading
            total += each.memory_info().rss
    return total


@dataclass
class Process:
    """One whole process: wall seconds and the peak resident memory of it and its children."""

    seconds: float
    peak_mb: float
    output: str


def run_process(command: Sequence[str], env: dict[str, str] | None = None) -> Process:
    """Run a command to its end, sampling its memory (and its children's) as it goes."""
    started = time.perf_counter()
    child = subprocess.Popen(
        list(command),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watched, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, tree_rss(watched))
        time.sleep(SAMPLE_EVERY)
    seconds = time.perf_counter() - started
    output = child.stdout.read() if child.stdout else ""
    if child.returncode:
        raise RuntimeError(f"{' '.join(command)} exited with {child.returncode}:\n{output[-2000:]}")
    return Process(seconds, peak / MB, output)


def wait_for_class_archive(timeout: float = 600) -> str:
    """Wait while the background process makes Spark's class archive (the first engine on a
    machine starts it); what the figures below are measured with."""
    from segmentation.spark_engine import engine_home

    folder = engine_home() / "class-archive"
    deadline = time.monotonic() + timeout
    while list(folder.glob("*.lock")) and time.monotonic() < deadline:
        time.sleep(1)
    return "with Spark's class archive" if list(folder.glob("*.jsa")) else "without a class archive"


class StorageWatch:
    """While a run goes on, the most of the cached table Spark keeps in memory and on disk, and
    the most cached blocks it has written to disk at once."""

    def __init__(self, spark, local_dir: Path, interval: float = 0.5) -> None:
        self._context = spark.sparkContext._jsc.sc()
        self._dirs = [local_dir]  # Spark's spark.local.dir, where it spills and caches on disk
        self.cached_mb = self.on_disk_mb = 0.0
        self.blocks_on_disk = 0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _look(self) -> None:
        for info in self._context.getRDDStorageInfo():
            self.cached_mb = max(self.cached_mb, info.memSize() / MB)
            self.on_disk_mb = max(self.on_disk_mb, info.diskSize() / MB)
        spilled = [
            name
            for folder in self._dirs
            for _, _, names in os.walk(folder)
            for name in names
            if name.startswith("rdd_")
        ]
        self.blocks_on_disk = max(self.blocks_on_disk, len(spilled))

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(Exception):  # the engine may be between jobs
                self._look()

    def __enter__(self) -> StorageWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def spills(log: Path, since: int) -> int:
    """How often Spark's log says it spilled to disk or had no room to cache a block, after byte
    `since` (spills are logged at INFO by org.apache.spark.util.collection)."""
    with open(log, "rb") as fh:
        fh.seek(since)
        text = fh.read().decode(errors="replace")
    return sum(
        text.count(marker)
        for marker in ("spilling", "Spilling", "Not enough space to cache", "to disk instead")
    )


# Spark ----------------------------------------------------------------------------------------


def start_spark(warm_up: Callable[[object], object]):
    """The process's SparkSession, started and warmed by `warm_up(spark)`; neither is counted."""
    from segmentation.spark_engine import get_spark

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


def spark_segmentation(spark, path: Path, k: int = SEGMENTS) -> Run:
    """One run of the real pipeline into a fresh directory that is deleted afterwards."""
    from segmentation.params import SegmentationParams
    from segmentation.pipeline import run_segmentation

    with scratch_dir("bench-segmentation-") as scratch:
        result, seconds, memory = measure(
            lambda: run_segmentation(
                spark, str(path), SegmentationParams(k=k, seed=SEED), out_dir=scratch / "run"
            )
        )
    manifest = result.manifest
    return Run.measured(
        seconds,
        manifest.timings,
        memory,
        silhouette=number_or_nan(manifest.metrics.silhouette),
        extra={"rows_out": manifest.rows_out},
    )


def number_or_nan(value) -> float:
    return float("nan") if value is None else float(value)


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
