"""The "Hardening" corpus through the command line and the Upload page.

Every awkward file ends in a specific refusal (exit 2; an error and no Start on the page) or in
a repair the report explains, with the right values in the results; never a traceback, a blank
page or a silent misread. The files and their expected outcomes are in tests/bad_inputs.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from segmentation.cli import main
from tests.bad_inputs import CORPUS, Case, write_corpus
from tests.helpers import ROOT

# The fast tier runs these (refusals, encodings, repairs); the whole corpus is marked slow.
QUICK = {
    "empty",
    "xlsx_renamed",
    "near_miss_spendings",
    "text_instead_of_numbers",
    "latin1",
    "duplicate_customer_ids",
}
CASES = [
    pytest.param(case, id=case.name, marks=() if case.name in QUICK else pytest.mark.slow)
    for case in CORPUS
]
BY_NAME = {case.name: case for case in CORPUS}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("bad_inputs"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, spark):
    """This module's own app workspace; the engine shares the test session's Spark."""
    import ui

    previous = os.environ.get("SEGMENTATION_HOME")
    os.environ["SEGMENTATION_HOME"] = str(tmp_path_factory.mktemp("bad_inputs_workspace"))
    ui.services.clear()
    yield
    ui.services().runner.shutdown()
    ui.services.clear()
    if previous is None:
        os.environ.pop("SEGMENTATION_HOME", None)
    else:
        os.environ["SEGMENTATION_HOME"] = previous


def unescaped(text: str) -> str:
    """A message as the analyst reads it (ui.plain escapes Markdown with backslashes)."""
    return re.sub(r"\\(.)", r"\1", str(text))


def contains_all(messages: list[str], words: tuple[str, ...]) -> None:
    text = "\n".join(messages)
    for expected in words:
        assert expected in text, f"{expected!r} not in:\n{text}"


# ---- command line ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_command_line(case: Case, corpus, spark, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        ["run", str(corpus[case.name]), "--k", str(case.k), "--outliers", "none"]
        + ["--out", str(out)]
    )
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err
    if case.refused:
        assert code == 2, printed.err
        assert "error: " in printed.err
        contains_all([printed.err], case.error)
        assert not out.exists()
        return

    assert code == 0, printed.err
    notes = [line for line in printed.out.splitlines() if line.startswith("note: ")]
    if case.warnings:
        contains_all(notes, case.warnings)
    else:
        assert not notes  # read as it is: nothing to report
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] == case.rows
    if case.features is not None:
        assert manifest["features"] == list(case.features)
    if case.filled:
        assert manifest["repairs"]["filled_missing"] == {
            f: case.filled.get(f, 0) for f in manifest["features"]
        }
    customers = pd.read_csv(out / "customers.csv", keep_default_na=False)
    assert len(customers) == case.rows
    cleaned = pd.read_parquet(out / "chart_sample.parquet")  # small files: every customer
    assert len(cleaned) == case.rows
    id_column = manifest["input"]["mapping"]["customer_id"]
    for column, expected in case.values.items():
        parsed = dict(zip(cleaned[id_column], cleaned[column], strict=True))
        assert {i: parsed[i] for i in expected} == pytest.approx(expected)


def test_command_line_in_a_real_process_prints_no_traceback(corpus):
    """The contract scripts rely on, end to end: one refused file, before Spark starts."""
    done = subprocess.run(
        [sys.executable, "-m", "segmentation", "run", str(corpus["xlsx_renamed"])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: This file is not a CSV or Parquet table")
    assert "Traceback" not in done.stderr and not done.stdout


# ---- the Upload page ---------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_upload_page(case: Case, corpus, workspace):
    import ui

    jobs_before = len(ui.services().store.list())
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    at.switch_page("app_pages/upload.py").run()
    content = corpus[case.name].read_bytes()
    at.file_uploader[0].set_value((case.filename, content, "application/octet-stream")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Upload customer data"

    errors = [unescaped(e.value) for e in at.error]
    warnings = [unescaped(w.value) for w in at.warning]
    infos = [unescaped(i.value) for i in at.info]
    expected_errors = case.error if case.app_error is None else case.app_error
    expected_warnings = case.warnings if case.app_warnings is None else case.app_warnings
    if expected_errors:
        contains_all(errors, expected_errors)
    else:
        assert not errors
    if expected_warnings:
        contains_all(warnings, expected_warnings)
    else:
        assert not warnings
    contains_all(infos, case.app_info)
    if not expected_errors and not expected_warnings:
        assert [s.value for s in at.success] == ["No problems found."]

    start = [b for b in at.button if b.label == "Start segmentation"]
    can_start = bool(start) and not start[0].disabled
    assert can_start == (case.app_start if case.app_start is not None else not expected_errors)
    assert len(ui.services().store.list()) == jobs_before
