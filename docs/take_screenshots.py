"""Take the documentation's screenshots from a real run of the sample data.

Starts the app on a free port with a throw-away workspace (the same startup as the browser
tests), uploads sample_data/sample_customers.csv, runs it and saves one full-page PNG per page
at a 1366 px laptop width; then a sweep of k=2..10 of a real shop's order log (CDNOW, from the
`lifetimes` package) on Results and Visualization, and a sweep of 100,000 synthetic customers
shown on Results while its later k are still being measured; then CDNOW's 1997 customers
segmented, the log up to June 1998 assigned to that model and the two compared (the migration
heatmap, and the Sankey of the Flow tab):

    python -m docs.take_screenshots [--out docs/screenshots] [--only-assignment | --only-cdnow]

CDNOW's Visualization is saved once per tab (`visualization-cdnow-<tab>.png`), to see how its
heavy-tailed spend and order counts are drawn.

Needs Debian's Chromium (`apt-get install chromium`); emoji in tables need fonts-noto-color-emoji.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from segmentation.synthetic import write_customers
from tests.browser import (
    JOB_TIMEOUT_MS,
    SAMPLE_CUSTOMERS,
    active_job,
    app_server,
    full_page_screenshot,
    launch_chromium,
    nav,
    new_page,
    open_page,
    running_progress,
    start_segmentation,
    upload,
    wait_for_done,
    wait_for_report,
    wait_until_idle,
)
from tests.helpers import cdnow_csv, cdnow_lines

ROOT = Path(__file__).resolve().parent.parent
MAX_BYTES = 400_000


def shot(page: Page, out: Path, name: str) -> None:
    size = full_page_screenshot(page, out / name)
    note = "  (over the 400 kB budget)" if size > MAX_BYTES else ""
    print(f"{name}: {size / 1000:.0f} kB{note}")


def profiles_shot(page: Page, out: Path, name: str) -> None:
    """Visualization's Profiles tab, once its charts are drawn."""
    nav(page, "Visualization", "Visualization")
    page.get_by_role("tab", name="Profiles").click()
    charts = page.get_by_role("tabpanel").locator(".js-plotly-plot .main-svg")
    expect(charts.first).to_be_visible(timeout=JOB_TIMEOUT_MS)
    shot(page, out, name)


def visualization_tab_shots(page: Page, out: Path, prefix: str) -> None:
    """Visualization, one picture per tab (`<prefix>-<tab>.png`), once its charts are drawn."""
    nav(page, "Visualization", "Visualization")
    for tab in page.get_by_role("tab").all_inner_texts():
        page.get_by_role("tab", name=tab).click()
        # Its charts, or the note saying why there are none (CDNOW has no text column).
        drawn = page.get_by_role("tabpanel").locator(
            ".js-plotly-plot .main-svg, [data-testid='stAlert']"
        )
        expect(drawn.first).to_be_visible(timeout=JOB_TIMEOUT_MS)
        wait_until_idle(page)
        shot(page, out, f"{prefix}-{tab.lower().replace(' ', '-')}.png")


def cdnow_shots(page: Page, workspace: Path, out: Path) -> None:
    """A real shop: CDNOW's order log, k=2..10, on Results and on every Visualization tab once
    the suggestion is in."""
    cdnow = workspace / "cdnow_orders.csv"
    cdnow_csv(cdnow)
    sweep(page, cdnow)
    opener = active_job(page, cdnow.name).get_by_role("link", name="Open the measured k")
    expect(opener).to_be_visible(timeout=JOB_TIMEOUT_MS)
    opener.click()
    expect(page.get_by_text(re.compile(r"^Suggested k=\d+"))).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_text("Segments and classic RFM")).to_be_visible()
    wait_until_idle(page)
    shot(page, out, "results-cdnow.png")
    visualization_tab_shots(page, out, "visualization-cdnow")


def sweep(page: Page, file: Path) -> None:
    """Upload `file` and start a sweep of k=2..10 on it."""
    nav(page, "Upload", "Upload customer data")
    upload(page, file)
    wait_for_report(page)
    page.get_by_text("Try several k and suggest one").click()
    expect(page.get_by_text("Range of k")).to_be_visible()
    wait_until_idle(page)
    start_segmentation(page)


def assignment_shots(page: Page, workspace: Path, out: Path) -> None:
    """CDNOW's customers of 1997 segmented, the log up to June 1998 assigned to that model, and
    Results comparing the two: who moved between the segments."""
    lines = cdnow_lines()
    first_year = workspace / "cdnow-1997.csv"
    lines[lines["date"] <= "19971231"].to_csv(first_year, index=False)
    later = workspace / "cdnow-1998-06.csv"
    lines.to_csv(later, index=False)
    nav(page, "Upload", "Upload customer data")
    upload(page, first_year)
    wait_for_report(page)
    start_segmentation(page)
    wait_for_done(page)

    nav(page, "Upload", "Upload customer data")
    upload(page, later)
    wait_for_report(page)
    page.get_by_role("radio", name="Assign to an existing segmentation").click()
    expect(page.get_by_text("The file has every column the segmentation needs.")).to_be_visible(
        timeout=JOB_TIMEOUT_MS
    )
    wait_until_idle(page)
    shot(page, out, "upload-assign.png")
    page.get_by_role("button", name="Assign customers").click()
    expect(page.get_by_text(f"{later.name}: done in")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    page.get_by_role("link", name="Open the results").click()
    earlier = page.get_by_role("combobox", name="Earlier segmentation (before)")
    wait_until_idle(page)
    earlier.click()
    page.keyboard.type(first_year.name)  # filter the list, as the browser tests do
    page.get_by_role("option", name=re.compile(re.escape(first_year.name))).click()
    expect(page.get_by_text(re.compile(r"are now"))).to_have_count(5, timeout=JOB_TIMEOUT_MS)
    wait_until_idle(page)
    shot(page, out, "results-compare.png")
    page.get_by_role("tab", name="Flow").click()
    expect(page.get_by_role("tabpanel").locator(".js-plotly-plot .main-svg").first).to_be_visible()
    wait_until_idle(page)
    shot(page, out, "results-compare-flow.png")


def take(out: Path, only: str | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="screenshots-") as workspace,
        app_server(Path(workspace)) as server,
        sync_playwright() as playwright,
    ):
        browser = launch_chromium(playwright)
        page = new_page(browser)

        # Enter through the front door: the first page a new server serves decides its routing.
        open_page(page, server, "", "Customer Segmentation Dashboard")
        if only == "assignment":
            assignment_shots(page, Path(workspace), out)
            return
        if only == "cdnow":
            cdnow_shots(page, Path(workspace), out)
            return
        nav(page, "Upload", "Upload customer data")
        upload(page, SAMPLE_CUSTOMERS)
        wait_for_report(page)
        # The sidebar's engine status catches up within seconds once Spark has answered.
        expect(page.get_by_test_id("stSidebar")).to_contain_text("ready", timeout=JOB_TIMEOUT_MS)
        shot(page, out, "upload.png")

        start_segmentation(page)
        running_progress(page, SAMPLE_CUSTOMERS.name)
        shot(page, out, "monitor-running.png")
        wait_for_done(page)
        shot(page, out, "monitor.png")

        nav(page, "Results", "Segmentation results")
        expect(page.get_by_test_id("stMetricValue")).to_have_count(5)
        shot(page, out, "results.png")

        profiles_shot(page, out, "visualization.png")

        nav(page, "Home", "Customer Segmentation Dashboard")
        expect(page.get_by_test_id("stDataFrame")).to_be_visible()
        shot(page, out, "home.png")

        cdnow_shots(page, Path(workspace), out)

        # A sweep of 100,000 customers, opened while its later k are still being measured.
        shop = Path(workspace) / "shop-100k.csv"
        write_customers(shop, 100_000, seed=2)
        sweep(page, shop)
        opener = active_job(page, shop.name).get_by_role("link", name="Open the measured k")
        expect(opener).to_be_visible(timeout=JOB_TIMEOUT_MS)
        opener.click()
        expect(page.get_by_text(re.compile("still being measured"))).to_be_visible()
        shot(page, out, "results-streaming.png")
        assignment_shots(page, Path(workspace), out)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    only = parser.add_mutually_exclusive_group()
    only.add_argument(
        "--only-assignment",
        action="store_const",
        const="assignment",
        dest="only",
        help="only the assignment and comparison shots",
    )
    only.add_argument(
        "--only-cdnow",
        action="store_const",
        const="cdnow",
        dest="only",
        help="only CDNOW's sweep: Results and every Visualization tab",
    )
    args = parser.parse_args()
    take(args.out, args.only)


if __name__ == "__main__":
    main()
