"""Start the app and a headless Chromium for the browser tests and the screenshot script.

The app runs as a real `streamlit run app.py` subprocess in its own process group (so it and
its Spark JVM can be stopped together), by default in a Python environment built as the README's
first command builds it (requirements.txt only: what users install, without the test tools);
the browser is Debian's Chromium, never a downloaded one.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, Playwright, expect

from segmentation.preparation import STAGES
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CUSTOMERS = ROOT / "sample_data" / "sample_customers.csv"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISSING_CHROMIUM = f"{CHROMIUM} not found: install it with `apt-get install chromium`."
LAPTOP = {"width": 1366, "height": 900}

# Spark jobs take 10-40 s on two idle cores (minutes when the machine is busy); the first one
# also waits for the engine to start. Every wait is bounded by one of these.
SERVER_START_TIMEOUT = 90.0
PAGE_TIMEOUT_MS = 30_000
JOB_TIMEOUT_MS = 240_000

# expect() waits 5 s by default; a busy two-core machine needs longer for a page to settle.
expect.set_options(timeout=PAGE_TIMEOUT_MS)

EXCEPTION = '[data-testid="stException"]'
UPLOAD_INPUT = '[data-testid="stFileUploaderDropzoneInput"]'

# What the browser tabs said (console, page errors, closed websockets) and where the app servers
# log: shown under a failed browser test, so a failure on CI can be understood from its report.
TRACE: deque[str] = deque(maxlen=400)
APP_LOGS: list[Path] = []  # the failure report shows the last few


@dataclass(frozen=True)
class AppServer:
    """A running app: where to reach it, where it keeps its jobs and its log, its process group."""

    url: str
    workspace: Path
    log: Path
    process_group: int  # the app's and its Spark JVM's (the fault tests kill it)


def user_python() -> Path:
    """The Python of a virtualenv with requirements.txt only, as the README's first command
    installs it, built once per version of requirements.txt (and of Python) in the user's cache.

    A page that imports a package only requirements-dev.txt installs fails there, as it would
    for a user, where the development environment would hide it.
    """
    requirements = (ROOT / "requirements.txt").read_bytes()
    digest = hashlib.sha256(requirements + platform.python_version().encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    home = cache / "segmentation-dashboard" / f"user-venv-{digest}"
    python, done = home / "bin" / "python", home / ".installed"
    if not done.exists():
        shutil.rmtree(home, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(ROOT / "requirements.txt")],
            check=True,
        )
        done.touch()
    return python


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _stop(process: subprocess.Popen) -> None:
    """Stop the app and everything it started (the Spark JVM), politely and then firmly."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def app_server(
    workspace: Path, settings: dict[str, str] | None = None, python: Path | None = None
) -> Iterator[AppServer]:
    """Run `streamlit run app.py` on a free port with its own workspace (and any extra
    environment `settings`) until the block ends, with `python` (default: the users' one)."""
    workspace.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workspace / "streamlit.log"
    APP_LOGS.append(log)
    env = {
        **os.environ,
        "SEGMENTATION_HOME": str(workspace),
        "SPARK_MASTER": "local[2]",
        "SPARK_LOCAL_IP": "127.0.0.1",
        **(settings or {}),
    }
    command = [
        str(python or user_python()), "-m", "streamlit", "run", "app.py",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"streamlit exited with {process.returncode}:\n{log.read_text()}"
                )
            return _healthy(url)

        wait_until(healthy, SERVER_START_TIMEOUT, "a healthy streamlit server", every=0.25)
        yield AppServer(url, workspace, log, process.pid)
    finally:
        _stop(process)


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's headless Chromium (raises FileNotFoundError when it is not installed)."""
    if not CHROMIUM.exists():
        raise FileNotFoundError(MISSING_CHROMIUM)
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


def new_page(browser: Browser) -> Page:
    """A fresh laptop-sized page (own context: own cookies, own Streamlit session)."""
    context = browser.new_context(viewport=LAPTOP, device_scale_factor=1, accept_downloads=True)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    _trace(page)
    return page


def _trace(page: Page) -> None:
    """Record what the tab reports, tagged with the time and the tab's address."""

    def note(what: str) -> None:
        TRACE.append(f"{time.strftime('%H:%M:%S')} {page.url} {what}")

    page.on("console", lambda message: note(f"console.{message.type}: {message.text}"))
    page.on("pageerror", lambda error: note(f"page error: {error}"))
    page.on("websocket", lambda ws: ws.on("close", lambda _: note(f"websocket closed: {ws.url}")))


def failure_report() -> str:
    """The tabs' trace and the tails of the latest app servers' logs, for a failed test's report."""
    logs = [
        f"--- {log} (last 60 lines)\n"
        + "\n".join(log.read_text(errors="replace").splitlines()[-60:])
        for log in APP_LOGS[-3:]
        if log.exists()
    ]
    return "\n".join(["--- browser tabs", *TRACE, *logs])


def assert_no_exception(page: Page) -> None:
    """No Streamlit exception box on the page (its text is the failure message if there is one)."""
    errors = page.locator(EXCEPTION)
    if errors.count():
        raise AssertionError(f"Streamlit exception on {page.url}:\n{errors.first.inner_text()}")


def open_page(page: Page, server: AppServer, path: str, title: str) -> None:
    """Go to one of the app's pages by URL and wait until its title is drawn."""
    page.goto(f"{server.url}/{path}")
    wait_for_title(page, title)


def nav(page: Page, link: str, title: str) -> None:
    """Follow a sidebar navigation link and wait until the page's title is drawn."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=link).click()
    wait_for_title(page, title)


def wait_for_title(page: Page, title: str) -> None:
    expect(page.get_by_role("heading", name=title, level=1)).to_be_visible()
    wait_until_idle(page)
    assert_no_exception(page)


def wait_until_idle(page: Page, timeout_ms: int = JOB_TIMEOUT_MS) -> None:
    """Wait until the script run is over and nothing on the page is greyed out as stale."""
    expect(page.get_by_test_id("stApp")).to_have_attribute(
        "data-test-script-state", "notRunning", timeout=timeout_ms
    )
    expect(page.locator('[data-stale="true"]')).to_have_count(0, timeout=timeout_ms)


def upload(page: Page, file: Path | dict) -> None:
    """Choose a file in the Upload page's file uploader (a path, or a name/mimeType/buffer dict)."""
    page.locator(UPLOAD_INPUT).set_input_files(file)


def wait_for_report(page: Page) -> None:
    """Wait until the Upload page has checked the file with Spark and shows its report."""
    expect(page.get_by_role("heading", name="Validation report")).to_be_visible(
        timeout=JOB_TIMEOUT_MS
    )
    wait_until_idle(page)
    assert_no_exception(page)


def start_segmentation(page: Page) -> None:
    """Press Start on the Upload page and wait for the Job Monitor it switches to."""
    start = page.get_by_role("button", name="Start segmentation")
    expect(start).to_be_enabled(timeout=JOB_TIMEOUT_MS)
    start.click()
    expect(page.get_by_role("heading", name="Job Monitor", level=1)).to_be_visible()
    assert_no_exception(page)


def active_job(page: Page, file_name: str) -> Locator:
    """The Job Monitor's live status box of the active job on `file_name`."""
    return page.get_by_test_id("stExpander").filter(has_text=f"{file_name}:")


def running_progress(page: Page, file_name: str) -> int:
    """Wait until the job on `file_name` is in one of the pipeline's stages; its progress in %."""
    running = re.compile(rf"{re.escape(file_name)}: (?:{'|'.join(STAGES)}) \((\d+)%\)")
    status = active_job(page, file_name).locator("summary")
    expect(status).to_have_text(running, timeout=JOB_TIMEOUT_MS)
    return int(running.search(status.inner_text()).group(1))


def history_row(page: Page, file_name: str) -> Locator:
    """The Job Monitor history's rows for `file_name` (the grid's accessible table)."""
    return page.get_by_test_id("stDataFrame").locator("tbody tr").filter(has_text=file_name)


def wait_for_done(page: Page) -> None:
    """Wait on the Job Monitor until the job this browser session started has succeeded."""
    expect(page.get_by_text("done in")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    assert_no_exception(page)


def jobs(workspace: Path) -> list[dict]:
    """The app's job table, newest first (read straight from its database, never changed)."""
    database = workspace / "jobs.sqlite3"
    if not database.exists():
        return []
    with closing(sqlite3.connect(database, timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM jobs ORDER BY created_at DESC").fetchall()
    return [dict(row) for row in rows]


def choose_segmentation(page: Page, file_name: str) -> None:
    """On Results or Visualization, pick the newest finished job on `file_name` if not shown."""
    picker = page.get_by_role("combobox", name="Segmentation", exact=True)
    chosen = re.compile(rf"^{re.escape(file_name)} ·")
    expect(picker).to_be_visible()
    if chosen.search(picker.input_value()):
        return
    picker.click()
    page.get_by_role("option", name=chosen).first.click()
    expect(picker).to_have_value(chosen)
    wait_until_idle(page)
    assert_no_exception(page)


def full_page_screenshot(page: Page, path: Path) -> int:
    """A PNG of the whole page; returns its size in bytes.

    Streamlit scrolls inside its main element, not the document, so Playwright's full_page alone
    captures one viewport: the viewport is stretched to the content's height for the shot.
    """
    expect(page.get_by_test_id("stSkeleton")).to_have_count(0)  # lazily loaded widgets drawn
    page.mouse.move(0, 0)  # no hover effects (header anchors, tooltips) in the picture
    viewport = page.viewport_size
    height = page.get_by_test_id("stMain").evaluate("main => main.scrollHeight")
    page.set_viewport_size({"width": viewport["width"], "height": max(height, viewport["height"])})
    wait_until_idle(page)
    try:
        page.screenshot(path=path, full_page=True, type="png", animations="disabled")
    finally:
        page.set_viewport_size(viewport)
    return path.stat().st_size
