"""The Spark session factory: settings from the environment, and finding Java."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from segmentation.errors import EngineError
from segmentation.spark_engine import (
    SparkSettings,
    available_memory_mb,
    default_driver_memory,
    engine_info,
    java_version,
    parse_conf,
    resolve_java_home,
)
from tests.helpers import ROOT, wait_until


def test_settings_from_environment():
    settings = SparkSettings.from_env(
        {
            "SPARK_MASTER": "spark://10.0.0.5:7077",
            "SPARK_DRIVER_MEMORY": "2g",
            "SPARK_CONF": "spark.sql.shuffle.partitions=8; spark.executor.memory=2g",
        }
    )
    assert settings.master == "spark://10.0.0.5:7077" and settings.mode == "cluster"
    assert settings.driver_memory == "2g"
    assert settings.extra_conf == {
        "spark.sql.shuffle.partitions": "8",
        "spark.executor.memory": "2g",
    }
    assert SparkSettings.from_env({}).mode == "local"
    assert SparkSettings.from_env({}).driver_memory == default_driver_memory()
    assert SparkSettings.from_env({"SPARK_REMOTE": "sc://h:15002"}).mode == "connect"


def test_bad_extra_setting_is_explained():
    with pytest.raises(EngineError, match="spark.name=value"):
        parse_conf("shuffle=8")


def test_no_java_anywhere_is_one_clear_error(tmp_path):
    with pytest.raises(EngineError) as caught:
        resolve_java_home({"PATH": str(tmp_path)}, allow_bundled=False)
    assert "Java 17 or newer" in str(caught.value) and "apt-get install" in str(caught.value)


def test_bundled_runtime_from_pypi_is_used_when_the_system_has_none(tmp_path):
    home = resolve_java_home({"PATH": str(tmp_path)})
    assert (java_version(os.path.join(home, "bin", "java")) or 0) >= 17


@pytest.mark.slow  # a JVM of its own
def test_spark_starts_on_the_pypi_java_alone(tmp_path):
    """A fresh process with no system Java on PATH still gets a working engine."""
    no_java = tmp_path / "bin"  # every system command but java
    no_java.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for entry in os.scandir(folder) if os.path.isdir(folder) else ():
            target = no_java / entry.name
            if not entry.name.startswith("java") and not target.exists():
                target.symlink_to(entry.path)
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{no_java}"
    assert not shutil.which("java", path=env["PATH"])
    code = (
        "from segmentation.spark_engine import get_spark, engine_info\n"
        "s = get_spark(); print('rows', s.range(5).count(), engine_info(s)['java_version'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert "rows 5" in done.stdout, done.stderr[-2000:]


def test_engine_info_names_mode_and_versions(spark):
    info = engine_info(spark)
    assert info["mode"] == "local" and info["master"].startswith("local")
    assert info["spark_version"].startswith("4.") and info["java_version"]


def test_engine_failures_are_told_apart_from_bad_data(spark):
    from py4j.protocol import Py4JNetworkError

    from segmentation.errors import InputError
    from segmentation.spark_engine import ENGINE_LOST, engine_failure, engine_failure_reason

    lost = Py4JNetworkError("Answer from Java side is empty")
    heap = RuntimeError("Job aborted: java.lang.OutOfMemoryError: Java heap space")
    try:
        raise InputError("Spend has text") from heap
    except InputError as wrapped:
        wrapped_heap = wrapped
    data = InputError("Column 'Spend' has 3 values that are not numbers.")

    assert engine_failure(lost) and engine_failure(heap) and engine_failure(wrapped_heap)
    assert not engine_failure(data)
    # This session's JVM is alive, so only the error itself says what happened.
    assert engine_failure_reason(lost, wait=0) == ENGINE_LOST
    assert engine_failure_reason(heap, wait=0).startswith("Spark ran out of memory")
    assert engine_failure_reason(data, wait=0) is None


def test_driver_memory_follows_the_memory_available_unless_set():
    # A 1 GB host (Community Cloud's smallest) keeps the 512m floor; a laptop gets a quarter of
    # what is free up to 1g, enough to cache a million customers without spilling to disk.
    assert default_driver_memory(1024) == "512m"
    assert default_driver_memory(2600) == "650m"
    assert default_driver_memory(16_000) == "1024m"
    assert default_driver_memory(None) in {"512m", default_driver_memory(available_memory_mb())}
    assert (available_memory_mb() or 0) > 0


ENGINE_ARGUMENTS = (
    "from segmentation.spark_engine import get_spark\n"
    "jvm = get_spark().sparkContext._jvm\n"
    "print(list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()))"
)


@pytest.mark.slow  # builds a class archive: minutes
def test_the_first_engine_makes_a_class_archive_that_later_engines_map(tmp_path):
    """Spark's JVM starts about twice as fast from a class-data-sharing archive: the first start
    on a machine makes it in the background, later starts map it."""
    env = {k: v for k, v in os.environ.items() if k != "SPARK_CLASS_ARCHIVE"}
    env.update(SEGMENTATION_HOME=str(tmp_path), SPARK_MASTER="local[1]")

    def engine_arguments() -> str:
        done = subprocess.run(
            [sys.executable, "-c", ENGINE_ARGUMENTS],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    folder = tmp_path / "engine" / "class-archive"
    assert "SharedArchiveFile" not in engine_arguments()  # none yet: it is being made
    wait_until(
        lambda: list(folder.glob("*.jsa")) and not list(folder.glob("*.lock")),
        300,
        "the class archive",
        every=1,
    )
    (archive,) = folder.glob("*.jsa")
    assert f"-XX:SharedArchiveFile={archive}" in engine_arguments()
    latest = max((tmp_path / "engine" / "logs").glob("spark-*.log"))
    assert "[cds]" not in latest.read_text()  # mapped without a complaint

    env["SPARK_CLASS_ARCHIVE"] = "off"
    assert "SharedArchiveFile" not in engine_arguments()
