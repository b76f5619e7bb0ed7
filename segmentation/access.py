"""Who may see which jobs: one shared history (local default) or each visitor their own.

In per-user mode a signed-in user (Streamlit's login) owns jobs as `user:<email>`; an anonymous
visitor as `visitor:<random token>` carried in their page address, and those jobs are deleted
after the retention period.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from segmentation.errors import SegmentationError
from segmentation.job_store import JobStore

ACCESS_SETTING = "SEGMENTATION_ACCESS"
RETENTION_SETTING = "SEGMENTATION_RETENTION_DAYS"
SHARED_OWNER = "local"
VISITOR_PREFIX = "visitor:"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass(frozen=True)
class AccessSettings:
    """The access mode and how long anonymous visitors' jobs are kept."""

    per_user: bool = False
    retention_days: float = 7.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AccessSettings:
        """Read SEGMENTATION_ACCESS ('shared' or 'per-user') and SEGMENTATION_RETENTION_DAYS."""
        env = os.environ if env is None else env
        mode = env.get(ACCESS_SETTING, "shared").strip().lower()
        if mode not in ("shared", "per-user"):
            raise SegmentationError(
                f"{ACCESS_SETTING} must be 'shared' or 'per-user', not '{mode}'."
            )
        try:
            days = float(env.get(RETENTION_SETTING, cls.retention_days))
        except ValueError as exc:
            raise SegmentationError(f"{RETENTION_SETTING} must be a number of days.") from exc
        return cls(per_user=mode == "per-user", retention_days=days)


def new_visitor_token() -> str:
    """An unguessable token for an anonymous visitor."""
    return secrets.token_urlsafe(24)


def owner_for(settings: AccessSettings, user_email: str | None, visitor_token: str | None) -> str:
    """The owner name jobs are filed under for this visitor."""
    if not settings.per_user:
        return SHARED_OWNER
    if user_email:
        return f"user:{user_email.lower()}"
    if not visitor_token or not _TOKEN.match(visitor_token):
        raise SegmentationError("This visitor has no valid private link.")
    return f"{VISITOR_PREFIX}{visitor_token}"


def delete_expired(store: JobStore, settings: AccessSettings, now: float | None = None) -> int:
    """Delete anonymous visitors' finished jobs older than the retention period; return how many."""
    if not settings.per_user:
        return 0
    cutoff = (now or time.time()) - settings.retention_days * 86400
    deleted = 0
    for job in store.list(limit=1_000_000):
        if (
            job.owner.startswith(VISITOR_PREFIX)
            and not job.is_active
            and job.created_at.timestamp() < cutoff
        ):
            deleted += store.delete(job.id)
    return deleted
