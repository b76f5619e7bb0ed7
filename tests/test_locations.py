"""Dataset locations: only under the administrator's roots, never /etc/passwd."""

from __future__ import annotations

import pytest

from segmentation.errors import InputError
from segmentation.locations import data_roots, resolve_location


@pytest.fixture
def roots(tmp_path):
    data = tmp_path / "data"
    (data / "shop").mkdir(parents=True)
    (data / "shop" / "customers.csv").write_text("Age\n1\n")
    return data_roots({"SEGMENTATION_DATA_ROOTS": f"{data}, s3a://bucket/exports"})


def test_paths_and_folders_under_a_root_are_accepted(roots, tmp_path):
    data = tmp_path / "data"
    assert resolve_location(str(data / "shop" / "customers.csv"), roots) == str(
        data / "shop" / "customers.csv"
    )
    assert resolve_location(f"file://{data}/shop", roots) == str(data / "shop")
    assert resolve_location("s3a://bucket/exports/2026/customers.parquet", roots).startswith(
        "s3a://"
    )


@pytest.mark.parametrize(
    "location",
    [
        "/etc/passwd",
        "{data}/../../../../etc/passwd",
        "file:///etc/passwd",
        "s3a://bucket/other/file.csv",
        "s3a://bucket/exports/../secrets.csv",
        "hdfs://namenode/etc/passwd",
    ],
)
def test_locations_outside_the_roots_are_refused(roots, tmp_path, location):
    with pytest.raises(InputError, match="outside|may not contain"):
        resolve_location(location.format(data=tmp_path / "data"), roots)


def test_a_link_out_of_a_root_is_refused(roots, tmp_path):
    link = tmp_path / "data" / "escape"
    link.symlink_to("/etc")
    with pytest.raises(InputError, match="outside"):
        resolve_location(str(link / "passwd"), roots)


def test_turned_off_without_roots_and_missing_files_named(roots, tmp_path):
    with pytest.raises(InputError, match="turned off"):
        resolve_location("/tmp/x.csv", [])
    with pytest.raises(InputError, match="Nothing exists"):
        resolve_location(str(tmp_path / "data" / "nope.csv"), roots)
