"""A job: one segmentation run as the store keeps it, and what work functions hand back."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class JobState(StrEnum):
    """Where a job is in its life; the value is what the database stores."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class ModelRef:
    """The saved segmentation an assignment job places its customers in."""

    job_id: str  # the job that made it
    folder: str  # its results folder (of one k, for a sweep)
    k: int
    label: str  # how pickers named that job when the assignment was started

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "folder": self.folder, "k": self.k, "label": self.label}


@dataclass(frozen=True)
class Job:
    """One segmentation run as the store last saw it (a snapshot: fetch again to refresh)."""

    id: str
    owner: str
    input_path: str
    original_name: str
    params: dict[str, Any]
    state: JobState
    stage: str
    progress: float
    error: str | None
    result_dir: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    timings: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    segment_names: dict[int, dict[int, str]] = field(default_factory=dict)  # k -> segment -> name
    chosen_k: int | None = None  # the k the analyst picked in a sweep

    @property
    def is_active(self) -> bool:
        """True while the job waits or runs, so pages know to keep polling and offer Cancel."""
        return self.state in ACTIVE_STATES

    def stage_seconds(self) -> dict[str, float]:
        """Seconds of each finished stage (the pipeline's clock) and, while the job runs, of the
        current stage so far."""
        spent = dict(self.timings)
        running = self.duration
        if self.is_active and running is not None and self.stage and self.stage not in spent:
            spent[self.stage] = max(0.0, running - sum(spent.values()))
        return spent

    @property
    def model(self) -> ModelRef | None:
        """For an assignment (customers placed in a saved segmentation, no refit): which one."""
        saved = self.params.get("model")
        return ModelRef(**saved) if saved else None

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (to now while running); None before it starts."""
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(UTC)
        return max(0.0, (end - self.started_at).total_seconds())


@dataclass(frozen=True)
class JobMessage:
    """One line of a job's progress log."""

    ts: datetime
    stage: str
    message: str


@dataclass(frozen=True)
class JobOutcome:
    """What a work function hands back: where its results are and what the history shows."""

    result_dir: Path | str
    summary: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


# stage, progress 0..1, message and, from the pipeline, the seconds of each finished stage
ProgressFn = Callable[..., None]
WorkFn = Callable[[Job, ProgressFn], JobOutcome | None]


def workspace_dir() -> Path:
    """Where uploads, results and the job database live (SEGMENTATION_HOME, else ./workspace)."""
    home = Path(os.environ.get("SEGMENTATION_HOME") or PROJECT_ROOT / "workspace")
    home.mkdir(parents=True, exist_ok=True)
    return home


def new_id() -> str:
    """A random, unguessable identifier for a job or an upload."""
    return secrets.token_urlsafe(12)
