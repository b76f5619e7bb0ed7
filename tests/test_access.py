"""Per-user access: owners, private links and the retention clean-up."""

from __future__ import annotations

import time

import pytest

from segmentation.access import (
    AccessSettings,
    delete_expired,
    new_visitor_token,
    owner_for,
)
from segmentation.errors import SegmentationError
from segmentation.job_store import JobStore
from segmentation.uploads import save_upload
from tests.helpers import SAMPLE


def test_shared_mode_files_everything_under_one_owner():
    assert owner_for(AccessSettings(), "ann@example.com", None) == "local"


def test_per_user_owners():
    settings = AccessSettings.from_env({"SEGMENTATION_ACCESS": "per-user"})
    assert owner_for(settings, "Ann@Example.com", None) == "user:ann@example.com"
    token = new_visitor_token()
    assert owner_for(settings, None, token) == f"visitor:{token}"
    with pytest.raises(SegmentationError):
        owner_for(settings, None, "../../guess")


def test_bad_settings_are_explained():
    with pytest.raises(SegmentationError, match="shared' or 'per-user"):
        AccessSettings.from_env({"SEGMENTATION_ACCESS": "everyone"})


def test_retention_deletes_only_old_anonymous_jobs(tmp_path):
    store = JobStore(tmp_path)
    upload = save_upload(store.uploads, SAMPLE.read_bytes(), "s.csv")
    old_visitor = store.create(upload, "s.csv", {}, owner="visitor:" + "a" * 24)
    user = store.create(SAMPLE, "s.csv", {}, owner="user:ann@example.com")
    for job in (old_visitor, user):
        store.mark_cancelled(job.id)
    settings = AccessSettings(per_user=True, retention_days=1)
    assert delete_expired(store, settings, now=time.time() + 3 * 86400) == 1
    assert store.get(old_visitor.id) is None and not upload.exists()
    assert store.get(user.id) is not None
    assert delete_expired(store, AccessSettings(), now=time.time() + 99 * 86400) == 0
