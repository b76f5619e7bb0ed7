"""A class-data-sharing archive of the classes Spark loads, so its JVM starts in half the time.

Most of a Spark JVM's start goes to loading and verifying some ten thousand classes; Java can
map them from an archive an earlier run wrote instead (application class-data sharing). The
first start on a machine finds no archive and starts a background process: it runs a small
segmentation and a small sweep through Spark with `-XX:ArchiveClassesAtExit`, and moves the
archive into place once its JVM has exited. Every later start maps it (`-XX:SharedArchiveFile`).
The archive's name holds a fingerprint of the Java runtime and of Spark's jars, so an upgrade of
either makes a new one; the JVM ignores an archive it cannot use, and says so in the engine log.
SPARK_CLASS_ARCHIVE=off turns it all off.

`python -m segmentation.class_archive ARCHIVE` is that background process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTING = "SPARK_CLASS_ARCHIVE"  # "off" turns the archive off
DUMP_TO = "SEGMENTATION_CLASS_ARCHIVE_DUMP"  # set for the background process's own JVM
STALE_LOCK_SECONDS = 15 * 60
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def fingerprint(java_home: str | None) -> str:
    """What an archive is valid for: the Java runtime and Spark's jars."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    java = Path(java_home).resolve() if java_home else Path(sys.executable)
    release = java / "release"
    parts = [
        pyspark.__version__,
        str(java),
        release.read_text(errors="replace") if release.is_file() else "",
        *sorted(f"{p.name}:{p.stat().st_size}" for p in jars.glob("*.jar")),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def java_options(java_home: str | None, home: Path) -> str:
    """JVM options for a new Spark JVM: map the archive if there is one, else start making it
    in the background (and start this JVM without it)."""
    if os.environ.get(SETTING, "").lower() == "off":
        return ""
    dump = os.environ.get(DUMP_TO)
    if dump:
        return f"-XX:ArchiveClassesAtExit={dump}"
    archive = home / "class-archive" / f"spark-{fingerprint(java_home)}.jsa"
    if archive.is_file():
        return f"-XX:SharedArchiveFile={archive} -Xshare:auto"
    _start_making(archive)
    return ""


def _start_making(archive: Path) -> None:
    """Start the background process that makes `archive`, unless one already runs."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    lock = archive.with_suffix(".lock")
    with contextlib.suppress(FileNotFoundError):
        if time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
            lock.unlink()  # left by a process that died
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    # A local JVM whatever this process runs on: the archive is for the driver's JVM.
    env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}
    env["SPARK_MASTER"] = "local[1]"
    subprocess.Popen(
        [sys.executable, "-m", "segmentation.class_archive", str(archive)],
        cwd=PACKAGE_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def make(archive: Path) -> bool:
    """Run a small segmentation and a small sweep with a JVM that writes the classes it loaded
    to `archive` when it exits; True when the archive is in place."""
    from pyspark import SparkContext

    from segmentation.params import SegmentationParams
    from segmentation.pipeline import run_segmentation
    from segmentation.spark_engine import get_spark, stop_spark
    from segmentation.sweep import run_sweep
    from segmentation.synthetic import write_customers

    partial = archive.with_name(f"{archive.name}.partial-{os.getpid()}")
    os.environ[DUMP_TO] = str(partial)
    try:
        spark = get_spark()
        gateway = SparkContext._gateway
        assert gateway is not None  # get_spark() launched the JVM
        jvm = gateway.proc
        with tempfile.TemporaryDirectory() as scratch:
            customers = Path(scratch) / "customers.csv"
            write_customers(customers, 2000, seed=1)
            run_segmentation(spark, str(customers), SegmentationParams(k=3), Path(scratch) / "one")
            run_sweep(
                spark, str(customers), SegmentationParams(k_range=(2, 4)), Path(scratch) / "k"
            )
        stop_spark()
        jvm.stdin.close()  # the JVM exits, writing the archive
        jvm.wait(timeout=300)
        if partial.is_file() and partial.stat().st_size:
            os.replace(partial, archive)
            return True
        return False
    finally:
        partial.unlink(missing_ok=True)
        archive.with_suffix(".lock").unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(0 if make(Path(sys.argv[1])) else 1)
