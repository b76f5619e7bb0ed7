"""The job store (SQLite in the workspace) and the background runner that works through it.

Every segmentation run is a job: its input file, parameters, state, progress messages and result
folder are kept in `<workspace>/jobs.sqlite3`, so the history survives a restart of the app. The
runner executes jobs on a small thread pool; its threads never touch Streamlit, they only write
to the store, and the pages read the store to show progress.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

from segmentation.errors import InputError, JobCancelled, SegmentationError
from segmentation.session import engine_failure_reason, error_text, get_spark

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATABASE = "jobs.sqlite3"
UPLOADS = "uploads"
RESULTS = "results"
INTERRUPT_EVERY = 0.5  # seconds between repeated interrupts while a cancelled job winds down
_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_SUFFIX = re.compile(r"^(\.[A-Za-z0-9]{1,10}){1,2}$")

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


class JobState(StrEnum):
    """Where a job is in its life; the value is what the database stores."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _when(ts: float | None) -> datetime | None:
    return None if ts is None else _at(ts)


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

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (to now while running); None before it starts."""
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(UTC)
        return max(0.0, (end - self.started_at).total_seconds())

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> Job:
        return cls(
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


ProgressFn = Callable[[str, float, str], None]
WorkFn = Callable[[Job, ProgressFn], JobOutcome | None]


def workspace_dir() -> Path:
    """Where uploads, results and the job database live (SEGMENTATION_HOME, else ./workspace)."""
    home = Path(os.environ.get("SEGMENTATION_HOME") or PROJECT_ROOT / "workspace")
    home.mkdir(parents=True, exist_ok=True)
    return home


def new_id() -> str:
    """A random, unguessable identifier for a job or an upload."""
    return secrets.token_urlsafe(12)


def spark_tag(job_id: str) -> str:
    """The Spark operation tag under which a job's Spark work runs, so it can be interrupted."""
    return f"job-{job_id}"


def short_reason(exc: BaseException) -> str:
    """A one-line, traceback-free description of an unexpected error, for the job's error text."""
    failure = engine_failure_reason(exc)
    if failure:
        return failure
    text = error_text(exc) or ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # Py4J puts the useful Java message on the second line, after "An error occurred ...".
    if len(lines) > 1 and lines[0].startswith("An error occurred while calling"):
        lines = [lines[1].lstrip(": ")]
    text = lines[0] if lines else ""
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return reason if len(reason) <= 300 else reason[:297] + "..."


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

    def save_upload(self, data: bytes | BinaryIO, original_name: str, suffix: str = "") -> Path:
        """Keep an uploaded file under a generated name (the analyst's name is never a path)."""
        suffix = (suffix or "".join(Path(original_name).suffixes[-2:])).lower()
        if suffix and not suffix.startswith("."):
            suffix = f".{suffix}"
        if suffix and not _SUFFIX.match(suffix):
            raise InputError(f"'{suffix}' is not a file type the app can read.")
        # A fixed first letter: Spark skips input files whose names start with '_' or '.'.
        target = self.uploads / f"u{new_id()}{suffix}"
        partial = self.uploads / f".{target.name}.partial"
        try:
            with open(partial, "wb") as out:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    out.write(data)
                else:
                    if data.seekable():
                        data.seek(0)
                    shutil.copyfileobj(data, out, length=1024 * 1024)
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        log.info("saved upload %r as %s", original_name, target.name)
        return target

    def save_table(self, data: bytes | BinaryIO, original_name: str) -> Path:
        """Keep an uploaded table under the suffix its content needs (Spark picks gzip by suffix).

        A file that is not a table (empty, binary, a spreadsheet) is refused and not kept.
        """
        from segmentation.reading import storage_suffix

        path = self.save_upload(data, original_name, suffix=".upload")
        try:
            fixed = path.with_suffix(storage_suffix(str(path)))
        except InputError:
            path.unlink(missing_ok=True)
            raise
        path.rename(fixed)
        return fixed

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
        return None if row is None else Job._from_row(row)

    def list(self, owner: str | None = None, limit: int = 100) -> builtins.list[Job]:
        """Jobs newest first, for the history table (all owners when owner is None)."""
        where, args = ("WHERE owner = ?", [owner]) if owner is not None else ("", [])
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT * FROM jobs {where} ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (*args, int(limit)),
            ).fetchall()
        return [Job._from_row(row) for row in rows]

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

    def update_progress(self, job_id: str, stage: str, progress: float, message: str) -> bool:
        """Record how far an active job is; False when the job is no longer active."""
        progress = min(1.0, max(0.0, float(progress)))
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE jobs SET stage = ?, progress = ? WHERE id = ? AND state IN (?, ?)",
                (stage, progress, job_id, *(s.value for s in ACTIVE_STATES)),
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


def _hold(job_id: str) -> None:
    with _held_lock:
        _held.add(job_id)


def _release(job_id: str) -> None:
    with _held_lock:
        _held.discard(job_id)


def _spark_context(spark):
    """The SparkContext of a classic session; None under Spark Connect, which has none."""
    try:
        return spark.sparkContext
    except Exception:  # Spark Connect raises "not supported" for JVM attributes
        return None


def _quietly(action: Callable[..., Any], *args: Any) -> None:
    try:
        action(*args)
    except Exception:  # best effort: the session may be gone or the tag already removed
        log.debug("%s%r failed", getattr(action, "__name__", action), args, exc_info=True)


def _tag(spark, tag: str) -> None:
    spark.addTag(tag)
    context = _spark_context(spark)
    if context is not None:
        context.addJobTag(tag)


def _untag(spark, tag: str) -> None:
    _quietly(spark.removeTag, tag)
    context = _spark_context(spark)
    if context is not None:
        _quietly(context.removeJobTag, tag)


def _interrupt(spark, tag: str) -> None:
    # Under Spark Connect interruptTag stops the tagged operations of every thread. In classic
    # Spark it only sees tags the calling thread added (the real tag embeds the thread's id), so
    # a cancel from another thread goes through the SparkContext job tag set next to it.
    _quietly(spark.interruptTag, tag)
    context = _spark_context(spark)
    if context is not None:
        _quietly(context.cancelJobsWithTag, tag)


class JobRunner:
    """Runs queued jobs on a few background threads; one per process, shared by all sessions."""

    def __init__(
        self,
        store: JobStore,
        work: WorkFn,
        max_workers: int = 2,
        *,
        spark_provider: Callable[[], Any] | None = None,
    ) -> None:
        self.store = store
        self._work = work
        self._spark_provider = spark_provider or get_spark
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="segmentation-job")
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        self._futures: dict[str, Future] = {}
        self._sessions: dict[str, Any] = {}
        self._waiting: builtins.list[str] = []
        self._closed = False

    def submit(self, job_id: str) -> None:
        """Queue a job the store holds as queued; it starts when a worker is free."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the job runner has been shut down")
            if job_id in self._futures:
                return
            job = self.store.get(job_id)
            if job is None or job.state != JobState.QUEUED:
                raise ValueError(f"job {job_id!r} is not queued")
            _hold(job_id)
            self._events[job_id] = threading.Event()
            self._waiting.append(job_id)
            self._futures[job_id] = self._pool.submit(self._run, job_id)

    def queue_position(self, job_id: str) -> int | None:
        """1 for the next job to start, 2 for the one after...; None when not waiting here."""
        with self._lock:
            return self._waiting.index(job_id) + 1 if job_id in self._waiting else None

    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        """Block until a submitted job has finished (CLI and tests; pages poll the store)."""
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            futures.wait([future], timeout=timeout)
        return self.store.get(job_id)

    def cancel(self, job_id: str) -> bool:
        """Stop a job: drop it if it waits, interrupt its Spark work if it runs."""
        with self._lock:
            event = self._events.get(job_id)
            future = self._futures.get(job_id)
        if event is None or future is None:
            # Not running here (e.g. queued by a page but never submitted): settle it in the store.
            return self.store.mark_cancelled(job_id)
        event.set()
        job = self.store.get(job_id)
        if job is None or not job.is_active:
            return False
        if job.state == JobState.QUEUED and self.store.mark_cancelled(job_id):
            return True
        self.store.add_message(job_id, job.stage or "running", "Cancelling...")
        # Interrupt now and keep interrupting until the worker returns: a Spark action that
        # starts between two checks of the cancel event is stopped too.
        threading.Thread(
            target=self._interrupt_until_done,
            args=(job_id, future),
            name=f"segmentation-cancel-{job_id}",
            daemon=True,
        ).start()
        return True

    def _interrupt_until_done(self, job_id: str, future: Future) -> None:
        tag = spark_tag(job_id)
        while not future.done():
            with self._lock:
                spark = self._sessions.get(job_id)
            if spark is not None:
                _interrupt(spark, tag)
            futures.wait([future], timeout=INTERRUPT_EVERY)

    def shutdown(self, wait: bool = True) -> None:
        """Cancel every job of this runner and stop its threads (tests, clean exit)."""
        with self._lock:
            self._closed = True
            job_ids = builtins.list(self._futures)
        for job_id in job_ids:
            self.cancel(job_id)
        self._pool.shutdown(wait=wait)

    def _run(self, job_id: str) -> None:
        with self._lock:
            self._waiting.remove(job_id)
            event = self._events[job_id]
        try:
            self._execute(job_id, event)
        except Exception:  # the store itself failed; nothing more can be recorded
            log.exception("job %s: could not record its outcome", job_id)
        finally:
            with self._lock:
                self._events.pop(job_id, None)
                self._futures.pop(job_id, None)
                self._sessions.pop(job_id, None)
            _release(job_id)

    def _execute(self, job_id: str, event: threading.Event) -> None:
        if event.is_set():
            self.store.mark_cancelled(job_id)
            return
        if not self.store.mark_running(job_id):
            return  # cancelled or deleted while it waited
        job = self.store.get(job_id)
        assert job is not None

        def progress(stage: str, fraction: float, message: str = "") -> None:
            # Raising here is what stops the pipeline between stages once the analyst cancels.
            if event.is_set():
                raise JobCancelled("The job was cancelled.")
            self.store.update_progress(job_id, stage, fraction, message)

        tag = spark_tag(job_id)
        try:
            spark = self._spark_provider()
            _tag(spark, tag)
            with self._lock:
                self._sessions[job_id] = spark
            try:
                if event.is_set():
                    raise JobCancelled("The job was cancelled.")
                outcome = self._work(job, progress)
            finally:
                _untag(spark, tag)
            outcome = outcome or JobOutcome(self.store.result_dir(job_id))
            self.store.mark_succeeded(job_id, outcome.result_dir, outcome.summary, outcome.timings)
        except BaseException as exc:
            self._record_failure(job_id, exc, event)
            if not isinstance(exc, Exception):
                raise

    def _record_failure(self, job_id: str, exc: BaseException, event: threading.Event) -> None:
        if event.is_set() or isinstance(exc, JobCancelled):
            # Whatever Spark raised on interruption, the cause is the analyst's cancel.
            log.info("job %s cancelled", job_id)
            self.store.mark_cancelled(job_id)
        elif isinstance(exc, SegmentationError):
            log.info("job %s failed: %s", job_id, exc)
            self.store.mark_failed(job_id, str(exc))
        else:
            log.error("job %s failed unexpectedly", job_id, exc_info=exc)
            try:
                reason = short_reason(exc)
            except Exception:  # never leave the job running for want of a description
                log.exception("job %s: describing its error failed", job_id)
                reason = type(exc).__name__
            self.store.mark_failed(job_id, reason)


def run_pipeline_job(store: JobStore, spark_provider: Callable[[], Any]) -> WorkFn:
    """The work function the app hands to its JobRunner: one segmentation run per job."""

    def work(job: Job, progress: ProgressFn) -> JobOutcome:
        from segmentation.pipeline import run_segmentation
        from segmentation.preparation import SegmentationParams
        from segmentation.sweep import run_sweep

        params = SegmentationParams.from_dict(job.params)
        out_dir = store.result_dir(job.id)
        run = run_sweep if params.k_range else run_segmentation
        result = run(
            spark_provider(), job.input_path, params, out_dir=str(out_dir), progress=progress
        )
        manifest = result.manifest
        summary = {
            "rows": manifest.get("rows_out"),
            "k": manifest.get("suggested_k", params.k),
            "silhouette": manifest.get("metrics", {}).get("silhouette"),
        }
        return JobOutcome(out_dir, summary, dict(manifest.get("timings", {})))

    return work


def stage_durations(
    messages: Sequence[JobMessage], until: datetime | None = None
) -> dict[str, float]:
    """Seconds spent in each pipeline stage, from the first message of one stage to the next's."""
    firsts: dict[str, datetime] = {}
    for message in messages:
        firsts.setdefault(message.stage, message.ts)
    ordered = sorted(firsts.items(), key=lambda item: item[1])
    durations = {}
    for (stage, start), (_, end) in zip(ordered, ordered[1:], strict=False):
        durations[stage] = (end - start).total_seconds()
    if ordered and until is not None:
        stage, start = ordered[-1]
        durations[stage] = (until - start).total_seconds()
    return durations
