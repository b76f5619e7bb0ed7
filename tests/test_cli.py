"""The command line contract: files and a table on success, exit 2 and a plain message on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segmentation.cli import main
from tests.helpers import ROOT, SAMPLE, real_shaped_log, refunds_csv


def cli(*args, timeout=300, env=None):
    return subprocess.run(
        [sys.executable, "-m", "segmentation", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow  # a process of its own: a new JVM
def test_run_writes_results_and_prints_the_segments(tmp_path):
    out = tmp_path / "res"
    done = cli(
        "run", str(SAMPLE), "--k", "3", "--seed", "1", "--outliers", "remove", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[0] == f"30 customers in 3 segments -> {out}"
    assert "silhouette (squared Euclidean)" in done.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["k"] == 3 and manifest["params"]["seed"] == 1
    assert manifest["params"]["outliers"] == "remove"
    for name in manifest["segments"]:
        assert name["name"] in done.stdout
    assert (out / "customers.csv").exists() and (out / "segments.csv").exists()


def test_the_installed_command_is_the_same_command_line(tmp_path):
    """`pip install -e .` installs the `segmentation` command beside the interpreter."""
    command = Path(sys.executable).parent / "segmentation"
    out = tmp_path / "few.csv"
    done = subprocess.run(
        [str(command), "sample", str(out), "--rows", "12", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == f"wrote 12 synthetic customers (4 segments) to {out}\n"
    assert len(out.read_text().splitlines()) == 13


@pytest.mark.slow  # a process of its own: a new JVM
def test_spark_and_the_jvm_write_to_the_engine_log_not_to_the_terminal(tmp_path):
    home = tmp_path / "home"
    done = cli(
        "run",
        str(SAMPLE),
        "--k",
        "3",
        "--out",
        str(tmp_path / "res"),
        env={"SEGMENTATION_HOME": str(home), "SPARK_LOG_LEVEL": "INFO"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""
    (log,) = (home / "engine" / "logs").glob("spark-*.log")
    text = log.read_text()
    assert " INFO SparkContext: " in text  # Spark's own log lines


@pytest.mark.slow  # a process of its own: a new JVM
def test_invalid_input_exits_2_with_the_message_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Age,Spendings,Recency,Frequency\n1,2,3,4\n2,3,4,5\n")
    done = cli("run", str(bad), "--k", "2", "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert "Did you mean 'Spendings'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_not_a_table_is_refused_before_spark_starts(tmp_path):
    bad = tmp_path / "book.csv"
    bad.write_bytes(b"PK\x03\x04 an xlsx renamed")
    done = cli("run", str(bad), timeout=60)
    assert done.returncode == 2
    assert "Excel workbook" in done.stderr and "Traceback" not in done.stderr


def test_bad_k_is_invalid_input(tmp_path):
    done = cli("run", str(SAMPLE), "--k", "99", timeout=60)
    assert done.returncode == 2 and "between 2 and 30" in done.stderr


def test_sample_command_writes_synthetic_customers(tmp_path):
    out = tmp_path / "s.csv"
    done = cli("sample", str(out), "--rows", "500", timeout=60)
    assert done.returncode == 0, done.stderr
    assert out.read_text().count("\n") == 501


@pytest.mark.slow  # a process of its own: a new JVM
def test_order_log_with_attributes_through_the_command_line(tmp_path):
    import pandas as pd

    from segmentation.synthetic import make_transactions

    log, expected = make_transactions(300, seed=5)
    log.to_csv(tmp_path / "orders.csv", index=False)
    ids = expected["CustomerID"].astype(str)
    attributes = pd.DataFrame({"customer_id": ids[:250], "Age": range(20, 270)})
    attributes.to_csv(tmp_path / "people.csv", index=False)
    out = tmp_path / "res"
    done = cli(
        "run",
        str(tmp_path / "orders.csv"),
        "--customers",
        str(tmp_path / "people.csv"),
        "--features",
        "Recency,Frequency,Spend",
        "--k",
        "3",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["transactions"]["customers"] == len(expected)
    assert manifest["transactions"]["attributes"]["customers_missing"] == len(expected) - 250
    customers = pd.read_csv(out / "customers.csv")
    assert {"Recency", "Frequency", "Spend", "Tenure", "Age", "segment"} <= set(customers.columns)
    assert "note:" in done.stdout and "return lines" in done.stdout


def agree_column(printed: list[str]) -> list[str]:
    """The 'agree' cells of the segment table a run printed."""
    header = next(n for n, line in enumerate(printed) if line.startswith(" #  segment"))
    at = printed[header].index("agree")
    rows = [line for line in printed[header + 1 :] if line[:2].strip().isdigit()]
    return [row[at : at + 5].strip() for row in rows]


def test_the_command_line_says_every_repair_the_run_made(spark, tmp_path, capsys):
    """In process (the test session's Spark): a heavy-tailed Spend with three refunds."""
    path = refunds_csv(tmp_path / "refunds.csv")
    assert main(["run", str(path), "--k", "3", "--seed", "1", "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out.splitlines()
    # Beside each name, how many of its customers are what it says (segments.csv's 8 of 30, 8 of
    # 27 and 2 of 3); without Recency, Frequency and Spend there is nothing to agree with.
    assert agree_column(printed) == ["27%", "30%", "67%"]
    assert main(["run", str(path), "--features", "Age,Spend", "--out", str(tmp_path / "a")]) == 0
    assert agree_column(capsys.readouterr().out.splitlines()) == [""] * 4
    notes = [line for line in printed if line.startswith("note:")]
    # Each repair once, in the typed account's words: the validation's "will be filled" and
    # "kept: the model sees sign(x)·log(1 + |x|)" were the same two repairs, to be made.
    assert notes == [
        "note: Filled 1 missing value of 'Age' with the median, 39.",
        "note: The model sees 'Spend' as sign(x)·log(1 + |x|) (chosen automatically: "
        "skewness 5.8 above 1; its 3 negative values stay below zero), so its top customers stay "
        "apart instead of sharing a cap; it is not capped.",
        "note: No customer lies outside the IQR fences of 'Age', 'Recency' and 'Frequency': none "
        "capped there.",
    ]


def test_missing_ids_travel_from_the_command_line_into_run_and_score(spark, tmp_path, capsys):
    """In process: --missing-ids leaves the till account out of a run (its manifest keeps the
    ids) and out of an assignment, whether the model or the command line names it."""
    import pandas as pd

    from segmentation.loading import LoadOptions
    from segmentation.params import SegmentationParams
    from segmentation.scoring import assignment_options, load_model

    def ids(folder):
        return set(pd.read_csv(folder / "customers.csv", dtype=str)["CustomerID"])

    log = str(real_shaped_log(tmp_path / "gift-shop.csv"))
    plain, marked = tmp_path / "plain", tmp_path / "marked"
    assert main(["run", log, "--k", "3", "--seed", "1", "--out", str(plain)]) == 0
    assert "99999" in ids(plain)  # without the ids, the till account is a customer

    argv = ["score", str(plain), log, "--out", str(tmp_path / "scored"), "--missing-ids", "99999"]
    assert main(argv) == 0
    assert "99999" not in ids(tmp_path / "scored") and len(ids(tmp_path / "scored")) == 24
    scored = json.loads((tmp_path / "scored" / "manifest.json").read_text())
    assert scored["params"]["missing_ids"] == ["99999"]

    argv = ["run", log, "--k", "3", "--seed", "1", "--out", str(marked)]
    assert main([*argv, "--missing-ids", "99999, WALKIN,99999"]) == 0
    manifest = json.loads((marked / "manifest.json").read_text())
    assert manifest["params"]["missing_ids"] == ["99999", "WALKIN"]
    params = SegmentationParams.from_dict(manifest["params"])
    assert params.load_options.missing_ids == ("99999", "WALKIN")
    assert "99999" not in ids(marked) and len(ids(marked)) == 24

    # The model's ids stay missing in its assignments without being named again.
    model = load_model(marked).manifest
    assert assignment_options(model, LoadOptions(missing_ids=("0",))).missing_ids == (
        "99999",
        "WALKIN",
        "0",
    )
    capsys.readouterr()
