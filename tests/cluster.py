"""A Spark cluster on loopback for the cluster tests: standalone master and worker, Connect server.

Everything runs from the pip `pyspark` package (its folder is SPARK_HOME) on the system Java 17.
Each server is a foreground process in its own process group, logging to a file, so a test can
stop it and whatever it started (executors) by its group id, and show its log when it fails.

Run as `python -m tests.cluster app-job INPUT HOME --k K --seed S`, this module is also the
"app" of the tests: a job queued and run the way the Streamlit app does it, on the session that
SPARK_MASTER or SPARK_REMOTE selects.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 120.0  # seconds for a server to listen; JVMs start slowly on a busy 2-core box
RUN_TIMEOUT = 300.0  # seconds for one segmentation run, JVM start included
LOG_TAIL = 6000  # characters of a log shown when something fails

# Per application: one core and the smallest executor Spark accepts, so the Connect server's
# executor and one driver's executor fit side by side on the 2-core, 1 GiB worker.
APP_CONF = {"spark.cores.max": "1", "spark.executor.memory": "512m"}
WORKER_CORES, WORKER_MEMORY = 2, "1g"
# Every JVM here is short-lived and the machine small: the C1 compiler alone halves their CPU
# time (a local run: 35 s -> 17 s), and the serial collector needs no GC threads.
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"

# Settings of the test process that must not leak into a client or server.
_ENGINE_VARIABLES = (
    "SPARK_MASTER",
    "SPARK_REMOTE",
    "SPARK_CONF",
    "SPARK_CONNECT_MODE_ENABLED",
    "PYSPARK_GATEWAY_PORT",
    "PYSPARK_GATEWAY_SECRET",
)


def spark_home() -> Path:
    """The pip package's folder, which holds bin/spark-class, bin/spark-submit and the jars."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    """True when something accepts connections on the loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def tail(path: Path, chars: int = LOG_TAIL) -> str:
    """The end of a log file, for failure messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({path}: {exc})"
    return text if len(text) <= chars else "…" + text[-chars:]


def base_env(**extra: str) -> dict[str, str]:
    """The environment of a server or client: loopback only, system Java, the venv's Python."""
    from segmentation.spark_engine import resolve_java_home

    env = {k: v for k, v in os.environ.items() if k not in _ENGINE_VARIABLES}
    # The system Java on PATH, even if an earlier test pointed JAVA_HOME at the PyPI runtime.
    java_home = resolve_java_home({"PATH": os.environ.get("PATH", "")}, allow_bundled=False)
    if java_home:
        env["JAVA_HOME"] = java_home
    env.update(
        SPARK_HOME=str(spark_home()),
        SPARK_LOCAL_IP="127.0.0.1",
        JAVA_TOOL_OPTIONS=JVM_OPTIONS,  # drivers, executors (via the worker) and servers
        PYSPARK_PYTHON=sys.executable,
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    env.update(extra)
    return env


def stop_group(process: subprocess.Popen, grace: float = 15.0) -> None:
    """Stop a process and everything in its process group, politely and then firmly."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class Server:
    """A started server process: what it is, its log, and how to stop it."""

    name: str
    process: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, name: str, command: list[str], workdir: Path, env: dict[str, str]) -> Server:
        """Start `command` in its own process group, output to `<workdir>/<name>.log`."""
        workdir.mkdir(parents=True, exist_ok=True)
        log = workdir / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return cls(name, process, log)

    def wait_until(self, ready, what: str, timeout: float = START_TIMEOUT) -> None:
        """Poll `ready()` until it is true; fail with the log if the process dies or time runs out."""

        def alive_and_ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before {what}:\n"
                    f"{tail(self.log)}"
                )
            return ready()

        try:
            wait_until(alive_and_ready, timeout, f"{self.name}: {what}", every=0.5)
        except AssertionError as timed_out:
            raise RuntimeError(f"{timed_out}:\n{tail(self.log)}") from None

    def stop(self) -> None:
        stop_group(self.process)

    def describe(self) -> str:
        """Its log, for a failure message."""
        return f"--- {self.name} log ({self.log}) ---\n{tail(self.log)}"


@dataclass
class Standalone:
    """A standalone master with one worker, both on 127.0.0.1."""

    master: Server
    worker: Server
    url: str  # spark://127.0.0.1:PORT
    ui_port: int
    work_dir: Path  # the worker's: one folder per application, with the executors' logs

    def state(self) -> dict:
        """The master's view as JSON: workers, cores, running and finished applications."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as r:
            return json.load(r)

    def application_names(self) -> list[str]:
        """Names of every application that ran or runs on the cluster."""
        state = self.state()
        return [app["name"] for app in state["activeapps"] + state["completedapps"]]

    def stop(self) -> None:
        self.worker.stop()  # its executors are in its process group
        self.master.stop()

    def describe(self) -> str:
        """The master's and worker's logs and the last executor's, for a failure message."""
        executors = sorted(self.work_dir.glob("app-*/*/stderr"), key=lambda p: p.stat().st_mtime)
        last = f"--- executor log ({executors[-1]}) ---\n{tail(executors[-1])}" if executors else ""
        return f"{self.master.describe()}\n{self.worker.describe()}\n{last}"


def start_standalone(workdir: Path) -> Standalone:
    """Start a master and a worker (2 cores, 1 GiB) and wait until the worker has registered."""
    spark_class = str(spark_home() / "bin" / "spark-class")
    port, ui_port = free_port(), free_port()
    url = f"spark://127.0.0.1:{port}"
    work_dir = workdir / "worker-work"  # not the default, SPARK_HOME/work inside the venv
    # The master's REST submission server would take the fixed port 6066; it is not needed.
    env = base_env(SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false")
    master = Server.start(
        "master",
        [spark_class, "org.apache.spark.deploy.master.Master",
         "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)],
        workdir, env,
    )  # fmt: skip
    try:
        master.wait_until(lambda: listening(port) and listening(ui_port), "master port")
        worker = Server.start(
            "worker",
            [spark_class, "org.apache.spark.deploy.worker.Worker", url,
             "--host", "127.0.0.1", "--cores", str(WORKER_CORES), "--memory", WORKER_MEMORY,
             "--webui-port", str(free_port()), "--work-dir", str(work_dir)],
            workdir, env,
        )  # fmt: skip
    except BaseException:
        master.stop()
        raise
    cluster = Standalone(master, worker, url, ui_port, work_dir)
    try:
        worker.wait_until(lambda: _alive_workers(cluster) == 1, "worker registered with master")
    except BaseException as exc:
        cluster.stop()
        raise RuntimeError(f"{exc}\n{master.describe()}") from exc
    return cluster


def _alive_workers(cluster: Standalone) -> int:
    try:
        return cluster.state()["aliveworkers"]
    except (OSError, ValueError, KeyError):
        return 0


def start_connect(workdir: Path, master_url: str) -> tuple[Server, str]:
    """Start a Spark Connect server whose jobs run on the standalone cluster; (server, sc:// URL)."""
    port = free_port()
    command = [
        str(spark_home() / "bin" / "spark-submit"),
        "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--name", "Spark Connect server",
        "--master", master_url,
        "--conf", f"spark.connect.grpc.binding.port={port}",
        "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf", "spark.ui.enabled=false",
        *[arg for key, value in APP_CONF.items() for arg in ("--conf", f"{key}={value}")],
    ]  # fmt: skip
    # Its working directory differs from the clients': relative paths would go wrong there.
    server = Server.start("connect", command, workdir, base_env())
    try:
        server.wait_until(lambda: listening(port), "Spark Connect port")
    except BaseException:
        server.stop()
        raise
    return server, f"sc://127.0.0.1:{port}"


@dataclass
class Run:
    """A finished client process: exit code, output, and the wall time it took."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.command)}\nexit {self.returncode} after {self.seconds:.0f} s\n"
            f"--- stdout ---\n{self.stdout[-LOG_TAIL:]}\n--- stderr ---\n{self.stderr[-LOG_TAIL:]}"
        )


@dataclass
class Client:
    """A client process running in the background, in its own process group (with its JVM)."""

    command: list[str]
    process: subprocess.Popen
    output: Path  # stdout; stderr goes next to it
    started: float

    @classmethod
    def start(cls, command: list[str], cwd: Path, env: dict[str, str], output: Path) -> Client:
        """Start `command`; its output goes to files, so nothing blocks while nobody reads it."""
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "wb") as out, open(output.with_suffix(".err"), "wb") as err:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return cls(command, process, output, time.monotonic())

    def finish(self, timeout: float = RUN_TIMEOUT) -> Run:
        """Wait for the client to end (stopping it after `timeout` seconds) and collect its output."""
        note = ""
        try:
            self.process.wait(timeout=max(0.0, self.started + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            note = f"\n(stopped after {timeout:.0f} s)"
        self.stop()  # also whatever it left behind in its group
        return Run(
            self.command,
            self.process.returncode,
            self.output.read_text(errors="replace"),
            self.output.with_suffix(".err").read_text(errors="replace") + note,
            time.monotonic() - self.started,
        )

    def stop(self) -> None:
        stop_group(self.process, grace=5.0)


def run_client(command: list[str], cwd: Path, env: dict[str, str], output: Path) -> Run:
    """Run a client to completion (see Client)."""
    return Client.start(command, cwd, env, output).finish()


def app_job(input_path: str, home: Path, k: int, seed: int) -> dict:
    """Queue one job and run it as the app does (engine starter, job store, runner); its record."""
    from segmentation.job_runner import JobRunner, run_pipeline_job
    from segmentation.job_store import JobStore
    from segmentation.params import SegmentationParams
    from segmentation.spark_engine import EngineStarter, stop_spark

    engine = EngineStarter()
    store = JobStore(home)
    runner = JobRunner(
        store, run_pipeline_job(store, engine.session), max_workers=1, spark_provider=engine.session
    )
    try:
        job = store.create(
            input_path, Path(input_path).name, SegmentationParams(k=k, seed=seed).to_dict()
        )
        runner.submit(job.id)
        done = runner.wait(job.id, timeout=RUN_TIMEOUT)
    finally:
        runner.shutdown()
        stop_spark()
    return {
        "state": str(done.state),
        "error": done.error,
        "result_dir": done.result_dir,
        "engine": engine.info,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster")
    commands = parser.add_subparsers(dest="command", required=True)
    job = commands.add_parser("app-job", help="run one job the way the app does; print its record")
    job.add_argument("input")
    job.add_argument("home", type=Path)
    job.add_argument("--k", type=int, default=3)
    job.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    record = app_job(args.input, args.home, args.k, args.seed)
    print(json.dumps(record))
    return 0 if record["state"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
