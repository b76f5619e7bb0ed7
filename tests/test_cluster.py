"""The same segmentation on a real cluster: a standalone master and worker, and Spark Connect.

Both run on loopback from the pip package (see tests/cluster.py), started once for this module.
The command line, an app-style job and spark-submit run against them in subprocesses, and every
result must match local mode's for the same seed: segment sizes and names, each customer's
segment, and the quality figures within 1e-6 relative.

The two Spark Connect clients start as soon as their server is up and run in the background
while the standalone tests go on (the worker has a core for each); the last tests collect them.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from segmentation.spark_engine import java_version
from tests import cluster
from tests.helpers import ROOT, SAMPLE

K, SEED = 3, 7
METRICS = ("silhouette", "calinski_harabasz", "davies_bouldin", "within_ss")

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        (java_version(shutil.which("java") or "java") or 0) < 17,
        reason="the cluster tests run the servers on a system Java 17+ (`java` on PATH)",
    ),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="module")
def standalone(workdir):
    """A master and one worker (2 cores, 1 GiB), stopped when the module's tests are done."""
    started = cluster.start_standalone(workdir / "standalone")
    print(f"standalone cluster {started.url}; logs: {started.master.log}, {started.worker.log}")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def connect(workdir, standalone):
    """A Spark Connect server running its jobs on the standalone cluster; yields (URL, server)."""
    server, url = cluster.start_connect(workdir / "connect", standalone.url)
    print(f"Spark Connect server {url}; log: {server.log}")
    yield url, server
    server.stop()


@pytest.fixture(scope="module")
def customers(workdir) -> Path:
    """The input, in a folder of its own (clients run there and name it by a relative path)."""
    folder = workdir / "input"
    folder.mkdir()
    return Path(shutil.copy(SAMPLE, folder / "customers.csv"))


@pytest.fixture(scope="module")
def local_result(workdir, customers) -> Path:
    """The reference: the same command line in local mode.

    A subprocess like the others, so it gets their lean JVM (see cluster.JVM_OPTIONS): cheaper
    than starting this process's session when the module runs alone.
    """
    run = cluster.run_client(
        segmentation_cli(customers.name, "--out", "local-result"),
        customers.parent,
        cluster.base_env(SPARK_MASTER="local[2]"),
        workdir / "clients" / "local-cli.out",
    )
    assert run.returncode == 0, run.describe()
    out = customers.parent / "local-result"
    assert manifest(out)["versions"]["mode"] == "local"
    return out


@pytest.fixture(scope="module")
def connect_clients(connect, customers, workdir):
    """The command line and an app-style job on Spark Connect, started together in the background.

    Both run where the input is and name their files by relative paths, which must be resolved
    where the client runs, not in the server's working folder.
    """
    url, _ = connect
    env = cluster.base_env(SPARK_REMOTE=url)
    logs = workdir / "clients"
    clients = {
        "command line": cluster.Client.start(
            segmentation_cli(customers.name, "--out", "connect-result"),
            customers.parent,
            env,
            logs / "connect-cli.out",
        ),
        "app job": cluster.Client.start(
            app_job(customers.name, Path("connect-workspace")),
            customers.parent,
            env,
            logs / "connect-app.out",
        ),
        "full fit": cluster.Client.start(
            segmentation_cli(customers.name, "--fit", "full", "--out", "connect-full"),
            customers.parent,
            env,
            logs / "connect-full.out",
        ),
    }
    yield clients
    for client in clients.values():
        client.stop()


def manifest(out_dir: Path) -> dict:
    return json.loads((out_dir / "manifest.json").read_text())


def assert_same_segmentation(result: Path, reference: Path) -> None:
    """Same segments (number, name, size), same customer in each, same quality figures."""
    got, want = manifest(result), manifest(reference)
    assert [(s["segment"], s["name"], s["size"]) for s in got["segments"]] == [
        (s["segment"], s["name"], s["size"]) for s in want["segments"]
    ]
    for name in METRICS:
        assert got["metrics"][name] == pytest.approx(want["metrics"][name], rel=1e-6), name
    assert got["metrics"]["fitted_on"] == want["metrics"]["fitted_on"]

    pd.testing.assert_frame_equal(assignments(result), assignments(reference))
    assert len(assignments(result)) == got["rows_out"]


def assignments(out_dir: Path) -> pd.DataFrame:
    """Each customer's segment and name, by customer id."""
    table = pd.read_csv(out_dir / "customers.csv", dtype=str, keep_default_na=False)
    table = table[["CustomerID", "segment", "segment_name"]]
    return table.sort_values("CustomerID").reset_index(drop=True)


def assert_scored_like_the_model(scored: Path, model: Path, master: str) -> None:
    """Customers assigned to a saved segmentation on a cluster or over Connect get the segment
    and name the local run gave them, and the results name the model."""
    assert manifest(scored)["versions"]["master"] == master
    assert manifest(scored)["model_source"]["folder"] == str(model)
    pd.testing.assert_frame_equal(assignments(scored), assignments(model))


def segmentation_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "segmentation", "run", *args, "--k", str(K), "--seed", str(SEED)]


def app_job(input_path: str, home: Path) -> list[str]:
    command = [sys.executable, "-m", "tests.cluster", "app-job", input_path, str(home)]
    return [*command, "--k", str(K), "--seed", str(SEED)]


def finished_job(run: cluster.Run, cwd: Path) -> Path:
    """The result folder of the app-style job a client ran (its record is the last line)."""
    record = json.loads(run.stdout.strip().splitlines()[-1])
    assert record["state"] == "succeeded", record["error"]
    return cwd / record["result_dir"]


def standalone_env(standalone: cluster.Standalone) -> dict[str, str]:
    conf = "; ".join(f"{key}={value}" for key, value in cluster.APP_CONF.items())
    return cluster.base_env(SPARK_MASTER=standalone.url, SPARK_CONF=conf)


def command_line(*args: object) -> list[str]:
    """`python -m segmentation` with these arguments."""
    return [sys.executable, "-m", "segmentation", *map(str, args)]


def test_connect_server_runs_on_the_standalone_cluster(standalone, connect_clients):
    assert "Spark Connect server" in standalone.application_names()


def test_command_line_on_standalone_matches_local(standalone, customers, local_result, tmp_path):
    out = tmp_path / "result"
    run = cluster.run_client(
        segmentation_cli(str(customers), "--out", str(out)),
        ROOT,
        standalone_env(standalone),
        tmp_path / "cli.out",
    )
    assert run.returncode == 0, f"{run.describe()}\n{standalone.describe()}"
    assert "customers in 3 segments" in run.stdout
    versions = manifest(out)["versions"]
    assert (versions["mode"], versions["master"]) == ("cluster", standalone.url)
    assert "customer-segmentation" in standalone.application_names()
    assert_same_segmentation(out, local_result)


def test_app_job_on_standalone_matches_local(standalone, customers, local_result, tmp_path):
    run = cluster.run_client(
        app_job(str(customers), tmp_path / "workspace"),
        ROOT,
        standalone_env(standalone),
        tmp_path / "app.out",
    )
    assert run.returncode == 0, f"{run.describe()}\n{standalone.describe()}"
    out = finished_job(run, ROOT)
    assert manifest(out)["versions"]["master"] == standalone.url
    assert_same_segmentation(out, local_result)


def test_spark_submit_to_standalone_matches_local(standalone, customers, local_result, tmp_path):
    """`spark-submit --master spark://…` decides where the job runs, not the app's defaults."""
    out = tmp_path / "result"
    command = [
        str(cluster.spark_home() / "bin" / "spark-submit"),
        "--master", standalone.url,
        "--name", "segmentation-submitted",
        *[arg for key, value in cluster.APP_CONF.items() for arg in ("--conf", f"{key}={value}")],
        "segmentation/__main__.py",
        "run", str(customers), "--k", str(K), "--seed", str(SEED), "--out", str(out),
    ]  # fmt: skip
    run = cluster.run_client(command, ROOT, cluster.base_env(), tmp_path / "submit.out")
    assert run.returncode == 0, f"{run.describe()}\n{standalone.describe()}"
    versions = manifest(out)["versions"]
    assert (versions["mode"], versions["master"]) == ("cluster", standalone.url)
    assert "segmentation-submitted" in standalone.application_names()
    assert_same_segmentation(out, local_result)


@pytest.fixture(scope="module")
def standalone_full(standalone, customers, workdir) -> Path:
    """`--fit full` on the standalone cluster: Spark ML's KMeans on every customer."""
    out = workdir / "standalone-full"
    run = cluster.run_client(
        segmentation_cli(str(customers), "--fit", "full", "--out", str(out)),
        ROOT,
        standalone_env(standalone),
        workdir / "clients" / "standalone-full.out",
    )
    assert run.returncode == 0, f"{run.describe()}\n{standalone.describe()}"
    return out


def assert_spark_ml_fit(out: Path, master: str) -> None:
    """A full fit ran where it should, converged, and saved Spark ML's model of k centres."""
    got = manifest(out)
    assert got["versions"]["master"] == master
    assert got["params"]["fit"] == "full" and "Spark ML" in got["metrics"]["fit_kind"]
    assert got["metrics"]["converged"] is True
    assert got["files"]["spark_model"] == "spark_model"
    metadata = json.loads(next((out / "spark_model" / "metadata").glob("part-*")).read_text())
    assert metadata["class"] == "org.apache.spark.ml.clustering.KMeansModel"
    assert metadata["paramMap"]["k"] == K


def test_full_fit_on_standalone_saves_a_spark_ml_model(standalone, standalone_full):
    assert_spark_ml_fit(standalone_full, standalone.url)


def test_command_line_on_connect_matches_local(connect, connect_clients, customers, local_result):
    url, server = connect
    run = connect_clients["command line"].finish()
    assert run.returncode == 0, f"{run.describe()}\n{server.describe()}"
    out = customers.parent / "connect-result"
    versions = manifest(out)["versions"]
    assert (versions["mode"], versions["master"]) == ("connect", url)
    assert_same_segmentation(out, local_result)


def test_app_job_on_connect_matches_local(connect, connect_clients, customers, local_result):
    url, server = connect
    run = connect_clients["app job"].finish()
    assert run.returncode == 0, f"{run.describe()}\n{server.describe()}"
    out = finished_job(run, customers.parent)
    assert manifest(out)["versions"]["master"] == url
    assert_same_segmentation(out, local_result)


def test_full_fit_on_connect_matches_standalone(
    connect, connect_clients, customers, standalone_full
):
    url, server = connect
    run = connect_clients["full fit"].finish()
    assert run.returncode == 0, f"{run.describe()}\n{server.describe()}"
    out = customers.parent / "connect-full"
    assert_spark_ml_fit(out, url)
    assert_same_segmentation(out, standalone_full)


def assert_nobody_moved(comparison: Path, customers: int) -> None:
    """The comparison of a model with its own customers assigned to it: every customer stays."""
    kinds = {"from_segment": str, "to_segment": str}
    migration = pd.read_csv(comparison / "migration.csv", dtype=kinds)
    assert (migration["from_segment"] == migration["to_segment"]).all()
    assert migration["customers"].sum() == customers
    assert pd.read_csv(comparison / "movers.csv").empty


def test_score_and_compare_on_standalone_match_the_local_model(
    standalone, customers, local_result, tmp_path
):
    out, env = tmp_path / "scored", standalone_env(standalone)
    run = cluster.run_client(
        command_line("score", local_result, customers, "--out", out), ROOT, env, tmp_path / "s.out"
    )
    assert run.returncode == 0, f"{run.describe()}\n{standalone.describe()}"
    assert_scored_like_the_model(out, local_result, standalone.url)

    cmp = tmp_path / "cmp"
    run = cluster.run_client(
        command_line("compare", local_result, out, "--out", cmp), ROOT, env, tmp_path / "c.out"
    )
    assert run.returncode == 0, f"{run.describe()}\n{standalone.describe()}"
    assert_nobody_moved(cmp, manifest(local_result)["rows_out"])


def test_score_and_compare_on_connect_match_the_local_model(
    connect, connect_clients, customers, local_result, tmp_path
):
    url, server = connect
    connect_clients["command line"].finish()  # one client at a time beside the server's jobs
    out, cmp, env = tmp_path / "scored", tmp_path / "cmp", cluster.base_env(SPARK_REMOTE=url)
    run = cluster.run_client(
        command_line("score", local_result, customers, "--out", out), ROOT, env, tmp_path / "s.out"
    )
    assert run.returncode == 0, f"{run.describe()}\n{server.describe()}"
    assert_scored_like_the_model(out, local_result, url)

    run = cluster.run_client(
        command_line("compare", local_result, out, "--out", cmp), ROOT, env, tmp_path / "c.out"
    )
    assert run.returncode == 0, f"{run.describe()}\n{server.describe()}"
    assert_nobody_moved(cmp, manifest(local_result)["rows_out"])
