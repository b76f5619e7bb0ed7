"""One real local SparkSession for the whole test session, shared by every test."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("SPARK_MASTER", "local[2]")


@pytest.fixture(scope="session")
def spark():
    from segmentation.session import get_spark

    return get_spark()
