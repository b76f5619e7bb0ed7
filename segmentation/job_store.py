"""The job store: every job of a workspace in SQLite, so the history survives a restart.

Safe to use from the page threads and the runner's threads at once (one short-lived connection
per call, WAL). Jobs a live runner of this process holds are never recovered as interrupted.
"""

from __future__ import annotations

import builtins
import json
import logging
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from segmentation.errors import InputError, SegmentationError
from segmentation.jobs import ACTIVE_STATES, Job, JobMessage, JobState, new_id

log = logging.getLogger(__name__)

DATABASE = "jobs.sqlite3"
UPLOADS = "uploads"
RESULTS = "results"
_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")

# Jobs queued in this process are told apart from those a dead process left behind by this
# token; jobs a live runner of this process holds are never recovered as interrupted.
_PROCESS = secrets.token_hex(8)
_held: set[str] = set()
_held_lock = threading.Lock()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    input_path    TEXT NOT NULL,
    original_name TEXT NOT NULL,
    params        TEXT NOT NULL,
    state         TEXT NOT NULL,
    stage         TEXT NOT NULL DEFAULT '',
    progress      REAL NOT NULL DEFAULT 0,
    error         TEXT,
    result_dir    TEXT,
    created_at    REAL NOT NULL,
    started_at    REAL,
    finished_at   REAL,
    timings       TEXT NOT NULL DEFAULT '{}',
    summary       TEXT NOT NULL DEFAULT '{}',
    segment_names TEXT NOT NULL DEFAULT '{}',
    chosen_k      INTEGER,
    process       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE TABLE IF NOT EXISTS job_messages (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    ts      REAL NOT NULL,
    stage   TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_messages_by_job ON job_messages (job_id, id);
"""


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _when(ts: float | None) -> datetime | None:
    return None if ts is None else _at(ts)


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        owner=row["owner"],
        input_path=row["input_path"],
        original_name=row["original_name"],
        params=json.loads(row["params"]),
        state=JobState(row["state"]),
        stage=row["stage"],
        progress=row["progress"],
        error=row["error"],
        result_dir=row["result_dir"],
        created_at=_at(row["created_at"]),
        started_at=_when(row["started_at"]),
        finished_at=_when(row["finished_at"]),
        timings=json.loads(row["timings"]),
        summary=json.loads(row["summary"]),
        segment_names={
            int(k): {int(s): n for s, n in names.items()}
            for k, names in json.loads(row["segment_names"]).items()
        },
        chosen_k=row["chosen_k"],
    )


class JobStore:
    """Every job of a workspace, in SQLite, safe to use from the page threads and the runner."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.uploads = self.home / UPLOADS
        self.results = self.home / RESULTS
        for folder in (self.home, self.uploads, self.results):
            folder.mkdir(parents=True, exist_ok=True)
        self.database = self.home / DATABASE
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        self.recover_interrupted()

    # One short-lived connection per call: no connection is shared between threads, and WAL
    # lets the pages read while a worker writes.
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(
            self.database, timeout=30, isolation_level=None, check_same_thread=False
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys=ON")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the lock up front, so read-then-write is atomic."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @staticmethod
    def _log(conn: sqlite3.Connection, job_id: str, stage: str, message: str) -> None:
        conn.execute(
            "INSERT INTO job_messages (job_id, ts, stage, message) VALUES (?, ?, ?, ?)",
            (job_id, time.time(), stage, message),
        )

    def result_dir(self, job_id: str) -> Path:
        """Where a job's results go (not created: the pipeline refuses to overwrite a folder)."""
        if not _ID.match(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.results / job_id

    def create(
        self,
        input_path: Path | str,
        original_name: str,
        params: Mapping[str, Any],
        owner: str = "local",
    ) -> Job:
        """Record a new queued job; hand its id to a JobRunner to run it."""
        path: Path | str
        if "://" in str(input_path) and not str(input_path).startswith("file://"):
            path = str(input_path)  # a cluster location: the cluster checks it when the job runs
        else:
            path = Path(str(input_path).removeprefix("file://")).resolve()
            if not (path.is_file() or path.is_dir()):
                raise InputError(f"The input {original_name or path.name} is not available.")
        job_id = new_id()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO jobs (id, owner, input_path, original_name, params, state, "
                "created_at, process) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    owner,
                    str(path),
                    original_name[:255],
                    json.dumps(dict(params)),
                    JobState.QUEUED.value,
                    time.time(),
                    _PROCESS,
                ),
            )
            self._log(conn, job_id, "queued", "Queued.")
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        """The job as stored now, or None when there is no such job."""
        if not isinstance(job_id, str) or not _ID.match(job_id):
            return None
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def list(self, owner: str | None = None, limit: int = 100) -> builtins.list[Job]:
        """Jobs newest first, for the history table (all owners when owner is None)."""
        where, args = ("WHERE owner = ?", [owner]) if owner is not None else ("", [])
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT * FROM jobs {where} ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (*args, int(limit)),
            ).fetchall()
        return [_job(row) for row in rows]

    def messages(self, job_id: str) -> builtins.list[JobMessage]:
        """A job's progress log, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT ts, stage, message FROM job_messages WHERE job_id = ? ORDER BY id",
                (job_id,),
            ).fetchall()
        return [JobMessage(_at(r["ts"]), r["stage"], r["message"]) for r in rows]

    def add_message(self, job_id: str, stage: str, message: str) -> None:
        """Append a line to a job's log without changing its progress."""
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone():
                self._log(conn, job_id, stage, message)

    def update_progress(
        self,
        job_id: str,
        stage: str,
        progress: float,
        message: str,
        timings: Mapping[str, float] | None = None,
    ) -> bool:
        """Record how far an active job is and how long its finished stages took; False when
        the job is no longer active."""
        progress = min(1.0, max(0.0, float(progress)))
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE jobs SET stage = ?, progress = ?, timings = coalesce(?, timings) "
                "WHERE id = ? AND state IN (?, ?)",
                (
                    stage,
                    progress,
                    None if timings is None else json.dumps(dict(timings)),
                    job_id,
                    *(s.value for s in ACTIVE_STATES),
                ),
            ).rowcount
            if changed and message:
                self._log(conn, job_id, stage, message)
        return bool(changed)

    def _transition(
        self,
        job_id: str,
        to: JobState,
        from_states: tuple[JobState, ...],
        message: str,
        **columns: Any,
    ) -> bool:
        """Move a job between states only if it is still in one of `from_states`."""
        sets = ", ".join(f"{name} = ?" for name in ("state", *columns))
        marks = ", ".join("?" for _ in from_states)
        with self._write() as conn:
            changed = conn.execute(
                f"UPDATE jobs SET {sets} WHERE id = ? AND state IN ({marks})",
                (to.value, *columns.values(), job_id, *(s.value for s in from_states)),
            ).rowcount
            if changed:
                self._log(conn, job_id, to.value, message)
        return bool(changed)

    def mark_running(self, job_id: str) -> bool:
        """A worker starts the job; False if it was cancelled or deleted while it waited."""
        return self._transition(
            job_id,
            JobState.RUNNING,
            (JobState.QUEUED,),
            "Started.",
            started_at=time.time(),
            process=_PROCESS,
        )

    def mark_succeeded(
        self,
        job_id: str,
        result_dir: Path | str,
        summary: Mapping[str, Any] | None = None,
        timings: Mapping[str, float] | None = None,
    ) -> bool:
        """The job finished: keep where its results are and what the history table shows."""
        return self._transition(
            job_id,
            JobState.SUCCEEDED,
            (JobState.RUNNING,),
            "Finished.",
            progress=1.0,
            result_dir=str(result_dir),
            summary=json.dumps(dict(summary or {})),
            timings=json.dumps(dict(timings or {})),
            finished_at=time.time(),
        )

    def mark_failed(self, job_id: str, error: str) -> bool:
        """The job stopped on an error; `error` is what the analyst reads."""
        return self._transition(
            job_id,
            JobState.FAILED,
            ACTIVE_STATES,
            f"Failed: {error}",
            error=error,
            finished_at=time.time(),
        )

    def mark_cancelled(self, job_id: str) -> bool:
        """The analyst cancelled the job (before or while it ran)."""
        return self._transition(
            job_id,
            JobState.CANCELLED,
            ACTIVE_STATES,
            "Cancelled.",
            error="Cancelled by the analyst.",
            finished_at=time.time(),
        )

    def recover_interrupted(self) -> int:
        """Mark jobs a stopped process left queued or running as interrupted; return how many.

        Safe to call at any time: jobs a live runner of this process holds are left alone, and
        so are jobs this process queued but has not handed to a runner yet.
        """
        error = "The app stopped while this job was waiting or running. Retry it to run it again."
        with _held_lock:
            held = set(_held)
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id, state, process FROM jobs WHERE state IN (?, ?)",
                tuple(s.value for s in ACTIVE_STATES),
            ).fetchall()
            lost = [
                row["id"]
                for row in rows
                if row["id"] not in held
                and (row["process"] != _PROCESS or row["state"] == JobState.RUNNING.value)
            ]
            now = time.time()
            for job_id in lost:
                conn.execute(
                    "UPDATE jobs SET state = ?, error = ?, finished_at = ? WHERE id = ?",
                    (JobState.INTERRUPTED.value, error, now, job_id),
                )
                self._log(conn, job_id, JobState.INTERRUPTED.value, error)
        if lost:
            log.warning(
                "marked %d job(s) left behind by a stopped process as interrupted", len(lost)
            )
        return len(lost)

    def retry(self, job_id: str) -> Job:
        """A new queued job with the same input file and parameters as a finished one."""
        job = self.get(job_id)
        if job is None:
            raise KeyError(job_id)
        if job.is_active:
            raise SegmentationError(
                "This job is still queued or running; it cannot be retried yet."
            )
        local = "://" not in job.input_path
        if local and not Path(job.input_path).exists():
            raise InputError(
                f"The input file {job.original_name} of this job is no longer available.",
                hint="Upload it again to start a new run.",
            )
        return self.create(job.input_path, job.original_name, job.params, owner=job.owner)

    def set_segment_names(self, job_id: str, k: int, names: Mapping[int, str]) -> bool:
        """Keep the names the analyst gave the segments of one k (blank ones fall back)."""
        cleaned = {str(int(s)): str(v).strip() for s, v in sorted(names.items()) if str(v).strip()}
        with self._write() as conn:
            row = conn.execute("SELECT segment_names FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return False
            stored = json.loads(row["segment_names"])
            stored[str(int(k))] = cleaned
            conn.execute(
                "UPDATE jobs SET segment_names = ? WHERE id = ?", (json.dumps(stored), job_id)
            )
        return True

    def set_chosen_k(self, job_id: str, k: int) -> bool:
        """Remember which k of a sweep the analyst works with; pages and exports follow it."""
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE jobs SET chosen_k = ? WHERE id = ?", (int(k), job_id)
            ).rowcount
        return bool(changed)

    def delete(self, job_id: str) -> bool:
        """Forget a finished job: its row, messages, results and (if unshared) uploaded input."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT state, input_path FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None:
                return False
            if row["state"] in {s.value for s in ACTIVE_STATES}:
                raise SegmentationError("Cancel this job before deleting it.")
            conn.execute("DELETE FROM job_messages WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            shared = conn.execute(
                "SELECT 1 FROM jobs WHERE input_path = ? LIMIT 1", (row["input_path"],)
            ).fetchone()
        # Only files the store itself saved are removed; sample data and the like stay.
        upload = Path(row["input_path"])
        if not shared and upload.parent == self.uploads.resolve():
            upload.unlink(missing_ok=True)
        results = self.result_dir(job_id)
        shutil.rmtree(results, ignore_errors=True)
        for partial in self.results.glob(f".{job_id}.partial-*"):
            shutil.rmtree(partial, ignore_errors=True)
        return True


def hold(job_id: str) -> None:
    """Mark a job as held by a live runner of this process (never recovered as interrupted)."""
    with _held_lock:
        _held.add(job_id)


def release(job_id: str) -> None:
    """A job this process no longer holds."""
    with _held_lock:
        _held.discard(job_id)
