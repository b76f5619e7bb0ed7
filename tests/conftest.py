"""One real local SparkSession for the whole test session, shared by every test; and, under a
failed browser test, what the browser and the app said."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("SPARK_MASTER", "local[2]")
# No background process making a class archive beside the tests (test_spark_engine makes one).
os.environ.setdefault("SPARK_CLASS_ARCHIVE", "off")

BROWSER_MODULES = {"tests.test_browser", "tests.test_faults"}
SLOW_KINDS = ("browser", "cluster", "faults", "soak")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser, cluster, fault and soak tests are slow by nature: the fast tier leaves them out."""
    for item in items:
        if any(item.get_closest_marker(kind) for kind in SLOW_KINDS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def spark():
    from segmentation.spark_engine import get_spark

    return get_spark()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under a failed browser test, what the tabs and the app servers said."""
    report = (yield).get_result()
    browser = sys.modules.get("tests.browser")
    if report.failed and browser is not None and item.module.__name__ in BROWSER_MODULES:
        report.sections.append(("browser and app logs", browser.failure_report()))
